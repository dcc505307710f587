package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/riposte-soar/riposte/internal/actions/checkpoint"
)

// childFlag, first on the command line, makes this binary one of the processes it starts
// itself (re-executing os.Args[0]); it is not among the flags -h lists.
const childFlag = "-bench-child"

// runChild runs the child named by args[0] and returns its exit code. A child reports on
// stdout, one JSON line, and ends when its parent closes its stdin or dies.
func runChild(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "bench child: which one?")
		return 2
	}
	var err error
	switch args[0] {
	case "hec":
		err = hecChild(args[1:])
	case "pipeline":
		err = pipelineChild(args[1:])
	case "riposte":
		err = replicaChild(args[1:])
	default:
		err = fmt.Errorf("unknown child %q", args[0])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench child %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// startChild re-executes this binary as the named child and reads its first line of output.
func startChild(name string, args []string, stderr io.Writer) (*exec.Cmd, io.WriteCloser, *bufio.Reader, error) {
	cmd := exec.Command(os.Args[0], append([]string{childFlag, name}, args...)...)
	cmd.Stderr = stderr
	cmd.SysProcAttr = childAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, fmt.Errorf("start child %s: %w", name, err)
	}
	return cmd, stdin, bufio.NewReader(out), nil
}

func readLine(r *bufio.Reader, v any) error {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("child said nothing: %w", err)
	}
	return json.Unmarshal(line, v)
}

// The fake HEC's credentials, which riposte is configured with.
const (
	hecClientID  = "riposte-bench"
	hecAccessKey = "riposte-bench-key"
)

// hecProcess is the fake HEC, in a process of its own as a vendor would be, so that its CPU and
// memory are not counted as riposte's. Every request is answered after the vendor latency.
type hecProcess struct {
	url   string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	http  *http.Client
}

// hecStats is what the fake HEC saw since its last reset.
type hecStats struct {
	Requests      int64   `json:"requests"`
	EntityActions int64   `json:"entity_actions"` // POST /action/entity: one per vendor call of a quarantine
	HoldP50MS     float64 `json:"hold_p50_ms"`    // how long entity actions took to answer, as served
	HoldP99MS     float64 `json:"hold_p99_ms"`
}

func startHEC(ctx context.Context, delay time.Duration, stderr io.Writer) (*hecProcess, error) {
	cmd, stdin, out, err := startChild("hec", []string{"-delay", delay.String()}, stderr)
	if err != nil {
		return nil, err
	}
	var hello struct {
		URL string `json:"url"`
	}
	if err := readLine(out, &hello); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("fake HEC: %w", err)
	}
	return &hecProcess{url: hello.URL, cmd: cmd, stdin: stdin, http: &http.Client{Timeout: 10 * time.Second}}, nil
}

func (h *hecProcess) pid() int { return h.cmd.Process.Pid }

func (h *hecProcess) stop() {
	_ = h.stdin.Close()
	done := make(chan struct{})
	go func() { _ = h.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = h.cmd.Process.Kill()
		<-done
	}
}

// reset swaps in a fresh fake (no tasks, no request log, no tokens) and zeroes the counts.
func (h *hecProcess) reset() error { return h.post("/__bench/reset") }

// zero zeroes the counts only: the tokens riposte holds stay good.
func (h *hecProcess) zero() error { return h.post("/__bench/zero") }

func (h *hecProcess) post(path string) error {
	resp, err := h.http.Post(h.url+path, "text/plain", nil)
	if err != nil {
		return fmt.Errorf("fake HEC %s: %w", path, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("fake HEC %s: %s", path, resp.Status)
	}
	return nil
}

// holds says how long each alert's quarantine took HEC to answer, by entity (alert) id.
func (h *hecProcess) holds() (map[string]time.Duration, error) {
	resp, err := h.http.Get(h.url + "/__bench/holds")
	if err != nil {
		return nil, fmt.Errorf("fake HEC holds: %w", err)
	}
	defer resp.Body.Close()
	var ns map[string]int64
	if err := json.NewDecoder(resp.Body).Decode(&ns); err != nil {
		return nil, err
	}
	out := make(map[string]time.Duration, len(ns))
	for id, n := range ns {
		out[id] = time.Duration(n)
	}
	return out, nil
}

func (h *hecProcess) stats() (hecStats, error) {
	var s hecStats
	resp, err := h.http.Get(h.url + "/__bench/stats")
	if err != nil {
		return s, fmt.Errorf("fake HEC stats: %w", err)
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// hecChild serves checkpoint's strict fake behind a fixed delay until stdin closes.
func hecChild(args []string) error {
	fs := flag.NewFlagSet("hec", flag.ContinueOnError)
	delay := fs.Duration("delay", 50*time.Millisecond, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	h := &delayedHEC{delay: *delay}
	h.renew()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	if err := json.NewEncoder(os.Stdout).Encode(map[string]string{"url": "http://" + ln.Addr().String()}); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return srv.Close()
}

type delayedHEC struct {
	delay         time.Duration
	fake          atomic.Pointer[checkpoint.Fake]
	requests      atomic.Int64
	entityActions atomic.Int64

	mu    sync.Mutex
	holds []time.Duration
	byID  map[string]time.Duration // entity id → how long its quarantine took to answer
}

func (h *delayedHEC) renew() {
	h.fake.Store(checkpoint.NewFake(hecClientID, hecAccessKey))
	h.zero()
}

func (h *delayedHEC) zero() {
	h.requests.Store(0)
	h.entityActions.Store(0)
	h.mu.Lock()
	h.holds, h.byID = nil, map[string]time.Duration{}
	h.mu.Unlock()
}

func (h *delayedHEC) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/__bench/reset":
		h.renew()
		w.WriteHeader(http.StatusNoContent)
		return
	case "/__bench/zero":
		h.zero()
		w.WriteHeader(http.StatusNoContent)
		return
	case "/__bench/holds":
		h.mu.Lock()
		byID := make(map[string]int64, len(h.byID))
		for id, d := range h.byID {
			byID[id] = int64(d)
		}
		h.mu.Unlock()
		_ = json.NewEncoder(w).Encode(byID)
		return
	case "/__bench/stats":
		h.mu.Lock()
		holds := slices.Clone(h.holds)
		h.mu.Unlock()
		slices.Sort(holds)
		_ = json.NewEncoder(w).Encode(hecStats{
			Requests: h.requests.Load(), EntityActions: h.entityActions.Load(),
			HoldP50MS: ms(percentile(holds, 0.50)), HoldP99MS: ms(percentile(holds, 0.99)),
		})
		return
	}
	began := time.Now()
	h.requests.Add(1)
	entity := strings.HasSuffix(r.URL.Path, "/action/entity")
	var ids []string
	if entity {
		// Which alerts this call is for (the bench's entity ids are its alert ids), so that the
		// latency case can take each alert's own vendor time out of its latency.
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err == nil {
			var req struct {
				RequestData struct {
					EntityIDs []string `json:"entityIds"`
				} `json:"requestData"`
			}
			_ = json.Unmarshal(body, &req)
			ids = req.RequestData.EntityIDs
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	time.Sleep(h.delay)
	h.fake.Load().ServeHTTP(w, r)
	if entity {
		h.entityActions.Add(1)
		took := time.Since(began)
		h.mu.Lock()
		h.holds = append(h.holds, took)
		for _, id := range ids {
			h.byID[id] = took
		}
		h.mu.Unlock()
	}
}

// childReport is what the pipeline child measured of itself.
type childReport struct {
	Acked  int   `json:"acked"`
	WallNS int64 `json:"wall_ns"`
	CPUNS  int64 `json:"cpu_ns"`
	RSSKB  int64 `json:"rss_kb"`
	Error  string
}

// pipelineChild runs B against the parent's server and reports what it cost.
func pipelineChild(args []string) error {
	fs := flag.NewFlagSet("pipeline", flag.ContinueOnError)
	url := fs.String("url", "", "")
	n := fs.Int("n", 0, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	nc, err := nats.Connect(*url, nats.Name("riposte-bench-b-child"))
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	resetPeakRSS()
	began, cpu0 := time.Now(), cpuTime()
	acked, err := pipelineB(ctx, nc, *n)
	rep := childReport{Acked: acked, WallNS: int64(time.Since(began)), CPUNS: int64(cpuTime() - cpu0), RSSKB: peakRSSKB()}
	if err != nil {
		rep.Error = err.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		return err
	}
	if rep.Error != "" {
		return errors.New(rep.Error)
	}
	return nil
}
