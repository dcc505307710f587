package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/riposte-soar/riposte/internal/queue"
)

// The rss case: one riposte replica, wired by newReplica as in the other cases, in a process of
// its own (this binary re-executed as the "riposte" child) on the vendor-bound workload, against
// this process's server and the fake HEC. In-process cases can only report the peak RSS of the
// worker and the embedded server together; the child's VmHWM is the replica's alone.

// rssTarget is issue 16's ceiling for one replica's peak RSS, in MiB.
const rssTarget = 48

// heapSampleEvery is how often the child samples its Go heap for the peak.
const heapSampleEvery = 100 * time.Millisecond

// replicaReport is what the replica child measured of itself.
type replicaReport struct {
	Acked int64 `json:"acked"`
	Other int64 `json:"other"` // retried or dead-lettered deliveries: none should be
	// The window: from the parent's go to the last alert acked.
	WallNS int64 `json:"wall_ns"`
	CPUNS  int64 `json:"cpu_ns"`
	// VmHWM at the end (the process's peak since it started, never reset) and once wired, before
	// the first alert; VmRSS's anonymous and file-backed parts then, and VmRSS and its parts at
	// the end.
	PeakRSSKB   int64 `json:"peak_rss_kb"`
	WiredRSSKB  int64 `json:"wired_rss_kb"`
	WiredAnonKB int64 `json:"wired_anon_kb"`
	WiredFileKB int64 `json:"wired_file_kb"`
	EndRSSKB    int64 `json:"end_rss_kb"`
	EndAnonKB   int64 `json:"end_anon_kb"`
	EndFileKB   int64 `json:"end_file_kb"`
	Heap        heapFigures
	GOGC        int64  `json:"gogc"`       // percent; -1: off
	MemLimit    uint64 `json:"gomemlimit"` // bytes; math.MaxInt64: none
	GOMAXPROCS  int    `json:"gomaxprocs"`
	Error       string `json:"error,omitempty"`
}

// heapFigures are the child's runtime.MemStats: the peaks as sampled while it ran, and the
// figures as the last alert was acked.
type heapFigures struct {
	PeakInuse, PeakSys        uint64
	Inuse, Sys, Released      uint64
	Stack, RuntimeSys, NextGC uint64
	NumGC                     uint32
}

// heapSampler keeps the peaks of HeapInuse and HeapSys, read every heapSampleEvery.
type heapSampler struct {
	stopc chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	f     heapFigures
}

func startHeapSampler() *heapSampler {
	h := &heapSampler{stopc: make(chan struct{}), done: make(chan struct{})}
	h.sample()
	go func() {
		defer close(h.done)
		t := time.NewTicker(heapSampleEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				h.sample()
			case <-h.stopc:
				return
			}
		}
	}()
	return h
}

func (h *heapSampler) sample() heapFigures {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.f.PeakInuse, h.f.PeakSys = max(h.f.PeakInuse, ms.HeapInuse), max(h.f.PeakSys, ms.HeapSys)
	h.f.Inuse, h.f.Sys, h.f.Released = ms.HeapInuse, ms.HeapSys, ms.HeapReleased
	h.f.Stack, h.f.RuntimeSys, h.f.NextGC, h.f.NumGC = ms.StackSys, ms.Sys, ms.NextGC, ms.NumGC
	return h.f
}

// stop takes a last sample and returns the figures.
func (h *heapSampler) stop() heapFigures {
	close(h.stopc)
	<-h.done
	return h.sample()
}

// gcSettings are GOGC, GOMEMLIMIT and GOMAXPROCS as the runtime applies them (from the
// environment or their defaults).
func gcSettings() (gogc int64, memLimit uint64, procs int) {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(s)
	gogc = -1
	if s[0].Value.Kind() == metrics.KindUint64 {
		gogc = int64(s[0].Value.Uint64()) // GOGC=off reads as the largest uint64: -1
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		memLimit = s[1].Value.Uint64()
	}
	return gogc, memLimit, runtime.GOMAXPROCS(0)
}

// replicaChild is one riposte replica in this process: it wires itself, says it is ready, and
// on the parent's "go" line runs until n alerts are acked, then reports on stdout.
func replicaChild(args []string) error {
	fs := flag.NewFlagSet("riposte", flag.ContinueOnError)
	natsURL := fs.String("url", "", "")
	hecURL := fs.String("hec", "", "")
	dir := fs.String("playbooks", "", "")
	n := fs.Int("n", 0, "")
	inFlight := fs.Int("in-flight", 64, "")
	logLevel := fs.String("log-level", "info", "")
	timeout := fs.Duration("timeout", time.Minute, "")
	cpuProfile := fs.String("cpuprofile", "", "")
	memProfile := fs.String("memprofile", "", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *memProfile != "" {
		// The default rate samples one allocation per 512 KiB: too few for a heap of a few MiB.
		runtime.MemProfileRate = 4096
	}
	ctx := context.Background()
	pbs, err := loadPlaybooks(*dir)
	if err != nil {
		return err
	}
	counter := newFinishCounter(*n)
	r, err := newReplica(ctx, wiring{natsURL: *natsURL, cfg: queue.DefaultConfig(), logLevel: *logLevel, hecURL: *hecURL}, pbs, *inFlight, 0, counter, nil)
	if err != nil {
		return err
	}
	defer r.close()
	heap := startHeapSampler()
	var rep replicaReport
	wired := selfStatusKB()
	rep.WiredRSSKB, rep.WiredAnonKB, rep.WiredFileKB = wired["VmHWM"], wired["RssAnon"], wired["RssFile"]
	rep.GOGC, rep.MemLimit, rep.GOMAXPROCS = gcSettings()
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(map[string]bool{"ready": true}); err != nil {
		return err
	}
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fmt.Errorf("no go from the parent: %w", err)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	began, cpu0 := time.Now(), cpuTime()
	runCtx, stop := context.WithCancel(ctx)
	errs := make(chan error, 1)
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		if err := r.q.Run(runCtx, r.handler); err != nil {
			errs <- err
		}
	}()
	runErr := counter.await(ctx, errs, *timeout)
	rep.WallNS, rep.CPUNS = int64(time.Since(began)), int64(cpuTime()-cpu0)
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	rep.Heap = heap.stop()
	status := selfStatusKB()
	rep.PeakRSSKB, rep.EndRSSKB, rep.EndAnonKB, rep.EndFileKB = status["VmHWM"], status["VmRSS"], status["RssAnon"], status["RssFile"]
	stop()
	<-ran
	rep.Acked, rep.Other = counter.acked.Load(), counter.other.Load()
	if runErr == nil {
		runErr = counter.clean()
	}
	if runErr == nil && *memProfile != "" {
		// A heap profile: what is live at the last GC (inuse_space, its default) and what was
		// allocated since start (alloc_space).
		runErr = writeHeapProfile(*memProfile)
	}
	if runErr != nil {
		rep.Error = runErr.Error()
	}
	if err := out.Encode(rep); err != nil {
		return err
	}
	if rep.Error != "" {
		return errors.New(rep.Error)
	}
	// The parent closes stdin once it has read the report.
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// rssCase runs one replica in a child process on the vendor-bound workload, checks it as the
// vendor cases are checked, and reports the child's own peak RSS against rssTarget.
func (st *stack) rssCase(ctx context.Context) (*result, error) {
	ideal := idealRate(st.o.inFlight, st.o.vendorDelay)
	n := int(ideal * st.o.duration.Seconds())
	dir, err := st.playbookDir("rss")
	if err != nil {
		return nil, err
	}
	if err := vendorPlaybook(dir); err != nil {
		return nil, err
	}
	if err := st.reset(ctx); err != nil {
		return nil, err
	}
	if err := st.preload(ctx, "rss", n, true); err != nil {
		return nil, err
	}
	args := []string{"-url", st.srv.URL(), "-hec", st.hec.url, "-playbooks", dir, "-n", strconv.Itoa(n),
		"-in-flight", strconv.Itoa(st.o.inFlight), "-log-level", st.o.logLevel,
		"-timeout", caseTimeout(st.o.vendorDelay * time.Duration(n) / time.Duration(st.o.inFlight)).String()}
	if st.o.cpuProfile != "" {
		args = append(args, "-cpuprofile", profilePath(st.o.cpuProfile, "rss"))
	}
	if st.o.memProfile != "" {
		args = append(args, "-memprofile", profilePath(st.o.memProfile, "rss"))
	}
	cmd, stdin, out, err := startChild("riposte", args, st.stderr)
	if err != nil {
		return nil, err
	}
	defer stdin.Close()
	var ready struct {
		Ready bool `json:"ready"`
	}
	if err := readLine(out, &ready); err != nil || !ready.Ready {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("replica child not ready: %v", err)
	}
	runtime.GC() // the garbage of earlier cases is not the server's work for this one
	cpu0, hec0 := cpuTime(), processCPU(st.hec.pid())
	busy0, ticks0 := machineTicks()
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("replica child: %w", err)
	}
	var rep replicaReport
	readErr := readLine(out, &rep)
	serverCPU, hecCPU := cpuTime()-cpu0, processCPU(st.hec.pid())-hec0
	busy1, ticks1 := machineTicks()
	_ = stdin.Close()
	waitErr := cmd.Wait()
	switch {
	case readErr != nil:
		return nil, fmt.Errorf("replica child: %w", readErr)
	case rep.Error != "":
		return nil, fmt.Errorf("replica child: %s", rep.Error)
	case waitErr != nil:
		return nil, fmt.Errorf("replica child: %w", waitErr)
	case rep.Acked != int64(n):
		return nil, fmt.Errorf("replica child acked %d of %d alerts (%d deliveries ended otherwise)", rep.Acked, n, rep.Other)
	}
	hs, err := st.verifyQuarantined(ctx, "rss", n)
	if err != nil {
		return nil, err
	}
	busy := 0.0
	if ticks1 > ticks0 {
		busy = float64(busy1-busy0) / float64(ticks1-ticks0)
	}
	r := rssResult(n, st.o.inFlight, st.o.vendorDelay, rep, serverCPU, hecCPU, busy)
	r.Notes = append(r.Notes, fmt.Sprintf("HEC answered p50 %.1f / p99 %.1f ms", hs.HoldP50MS, hs.HoldP99MS))
	return r, nil
}

// rssResult is the rss case's row: the child's peak RSS against rssTarget, its memory and Go
// heap, and its CPU apart from the server's (its CPU column is the two together, as for B's
// child). busy is the machine's share busy during the window.
func rssResult(n, inFlight int, vendorDelay time.Duration, rep replicaReport, serverCPU, hecCPU time.Duration, busy float64) *result {
	u := usage{wall: time.Duration(rep.WallNS), cpu: time.Duration(rep.CPUNS) + serverCPU, rssKB: rep.PeakRSSKB, hecCPU: hecCPU, busy: busy}
	ideal := idealRate(inFlight, vendorDelay)
	r := newResult("rss", fmt.Sprintf("one replica in a child process, N=%d", inFlight), n, u, whereChild)
	r.setRef(fmt.Sprintf("N ÷ %s", vendorDelay), ideal)
	r.Fig = &figure{Label: "one replica: peak RSS", Value: kib(rep.PeakRSSKB), Unit: "MiB", Target: rssTarget, AtMost: true}
	h := rep.Heap
	limit := "none"
	if rep.MemLimit < math.MaxInt64 {
		limit = fmt.Sprintf("%.0f MiB", mibU(rep.MemLimit))
	}
	gogc := "off"
	if rep.GOGC >= 0 {
		gogc = strconv.FormatInt(rep.GOGC, 10)
	}
	r.Notes = append(r.Notes,
		fmt.Sprintf("%.2f of N ÷ %s", r.Rate/ideal, vendorDelay),
		fmt.Sprintf("riposte's process alone, MiB: peak RSS %.1f (%.1f once wired, before the first alert: %.1f anonymous + %.1f file-backed); at the end RSS %.1f = %.1f anonymous + %.1f file-backed (the binary's pages, and libc's)",
			kib(rep.PeakRSSKB), kib(rep.WiredRSSKB), kib(rep.WiredAnonKB), kib(rep.WiredFileKB), kib(rep.EndRSSKB), kib(rep.EndAnonKB), kib(rep.EndFileKB)),
		fmt.Sprintf("Go heap, MiB: HeapInuse peak %.1f, HeapSys peak %.1f (sampled every %s); at the end HeapInuse %.1f, HeapSys %.1f, %.1f of it returned to the OS; stacks %.1f; the runtime's total (Sys) %.1f; %d GCs, the next at %.1f; GOGC %s, GOMEMLIMIT %s, GOMAXPROCS %d",
			mibU(h.PeakInuse), mibU(h.PeakSys), heapSampleEvery, mibU(h.Inuse), mibU(h.Sys), mibU(h.Released), mibU(h.Stack), mibU(h.RuntimeSys), h.NumGC, mibU(h.NextGC), gogc, limit, rep.GOMAXPROCS),
		fmt.Sprintf("CPU: riposte's process %.2f s (%.3f s per 1k alerts), the server's %.2f s", time.Duration(rep.CPUNS).Seconds(), time.Duration(rep.CPUNS).Seconds()*1000/float64(n), serverCPU.Seconds()))
	return r
}

// kib and mibU give MiB of KiB (/proc) and of bytes (the runtime).
func kib(kb int64) float64  { return float64(kb) / 1024 }
func mibU(b uint64) float64 { return float64(b) / (1 << 20) }

// parseStatusKB reads the "Name:   1234 kB" lines of /proc/<pid>/status, in KiB.
func parseStatusKB(b []byte) map[string]int64 {
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		num, isKB := strings.CutSuffix(strings.TrimSpace(v), " kB")
		if !isKB {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}
