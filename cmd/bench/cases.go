package main

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/riposte-soar/riposte/internal/playbook"
	"github.com/riposte-soar/riposte/internal/queue"
)

// caseTimeout bounds a case that should take about d: a stuck case fails the run rather than
// hanging it.
func caseTimeout(d time.Duration) time.Duration { return max(time.Minute, 10*d) }

func (st *stack) connect(name string) (*nats.Conn, error) {
	return nats.Connect(st.srv.URL(), nats.Name(name))
}

// (a) the bare consumer.
func (st *stack) bare(ctx context.Context, n int) (*result, error) {
	if err := st.reset(ctx); err != nil {
		return nil, err
	}
	if err := st.preload(ctx, "bare", n, false); err != nil {
		return nil, err
	}
	nc, err := st.connect("riposte-bench-bare")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	cctx, cancel := context.WithTimeout(ctx, caseTimeout(time.Second))
	defer cancel()
	w, err := st.startWindow("bare")
	if err != nil {
		return nil, err
	}
	_, runErr := bareConsume(cctx, nc, n)
	u, err := w.end()
	if runErr != nil {
		return nil, runErr
	}
	if err != nil {
		return nil, err
	}
	if err := st.verify(ctx, expectation{ids: idsOf("bare", n)}, false); err != nil {
		return nil, err
	}
	r := newResult("bare", "bare pull + ack", n, u, whereInProcess)
	return r, nil
}

// (b) B in this process.
func (st *stack) pipelineInProcess(ctx context.Context, n int) (*result, error) {
	if err := st.reset(ctx); err != nil {
		return nil, err
	}
	if err := st.preload(ctx, "b", n, false); err != nil {
		return nil, err
	}
	nc, err := st.connect("riposte-bench-b")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	cctx, cancel := context.WithTimeout(ctx, caseTimeout(time.Second))
	defer cancel()
	w, err := st.startWindow("pipeline")
	if err != nil {
		return nil, err
	}
	_, runErr := pipelineB(cctx, nc, n)
	u, err := w.end()
	if runErr != nil {
		return nil, runErr
	}
	if err != nil {
		return nil, err
	}
	if err := st.verify(ctx, expectation{ids: idsOf("b", n), status: "succeeded"}, true); err != nil {
		return nil, err
	}
	return newResult("pipeline", "B: pull, parse, publish, ack", n, u, whereInProcess), nil
}

// (b) B in a child process: the worker's side alone in its process, the server in this one.
func (st *stack) pipelineChild(ctx context.Context, n int) (*result, error) {
	if err := st.reset(ctx); err != nil {
		return nil, err
	}
	if err := st.preload(ctx, "bc", n, false); err != nil {
		return nil, err
	}
	runtime.GC() // the garbage of earlier cases is not the server's work for this one
	cpu0 := cpuTime()
	busy0, ticks0 := machineTicks()
	cmd, stdin, out, err := startChild("pipeline", []string{"-url", st.srv.URL(), "-n", strconv.Itoa(n)}, st.stderr)
	if err != nil {
		return nil, err
	}
	defer stdin.Close()
	var rep childReport
	readErr := readLine(out, &rep)
	_ = stdin.Close()
	waitErr := cmd.Wait()
	serverCPU := cpuTime() - cpu0
	busy1, ticks1 := machineTicks()
	switch {
	case readErr != nil:
		return nil, fmt.Errorf("B child: %w", readErr)
	case rep.Error != "":
		return nil, fmt.Errorf("B child: %s", rep.Error)
	case waitErr != nil:
		return nil, fmt.Errorf("B child: %w", waitErr)
	}
	if err := st.verify(ctx, expectation{ids: idsOf("bc", n), status: "succeeded"}, true); err != nil {
		return nil, err
	}
	u := usage{wall: time.Duration(rep.WallNS), cpu: time.Duration(rep.CPUNS) + serverCPU, rssKB: rep.RSSKB}
	if ticks1 > ticks0 {
		u.busy = float64(busy1-busy0) / float64(ticks1-ticks0)
	}
	r := newResult("pipeline-child", "B in a child process", n, u, whereChild)
	r.Notes = append(r.Notes, fmt.Sprintf("CPU: B's process %.2f s, the server's %.2f s", time.Duration(rep.CPUNS).Seconds(), serverCPU.Seconds()))
	return r, nil
}

// condition: 50 playbooks on the alert's subject, none matching, against B.
func (st *stack) condition(ctx context.Context, n int, ref *result) (*result, error) {
	dir, err := st.playbookDir("condition")
	if err != nil {
		return nil, err
	}
	if err := conditionPlaybooks(dir, st.o.playbooks); err != nil {
		return nil, err
	}
	pbs, err := loadPlaybooks(dir)
	if err != nil {
		return nil, err
	}
	if err := st.reset(ctx); err != nil {
		return nil, err
	}
	if err := st.preload(ctx, "cond", n, false); err != nil {
		return nil, err
	}
	u, err := st.runRiposte(ctx, riposteCase{name: "condition", pbs: pbs, replicas: 1, inFlight: st.o.inFlight, want: n, timeout: caseTimeout(5 * time.Second)})
	if err != nil {
		return nil, err
	}
	if err := st.verify(ctx, expectation{ids: idsOf("cond", n), status: "unmatched"}, true); err != nil {
		return nil, err
	}
	title := fmt.Sprintf("condition-only: %d playbooks, none match", len(pbs))
	if len(pbs) == 1 {
		title = "condition-only: 1 playbook, not matching"
	}
	r := newResult("condition", title, n, u, whereInProcess)
	r.Notes = append(r.Notes, fmt.Sprintf("max in flight %d", st.o.inFlight))
	if ref != nil {
		r.setRef("B in-process", ref.Rate)
		r.Fig = &figure{Label: "condition-only ÷ B", Value: r.Rate / ref.Rate, Target: 0.80}
	}
	return r, nil
}

// loadVendorPlaybook writes and loads the one-HEC-action playbook.
func (st *stack) loadVendorPlaybook() ([]*playbook.Playbook, error) {
	dir, err := st.playbookDir("vendor")
	if err != nil {
		return nil, err
	}
	if err := vendorPlaybook(dir); err != nil {
		return nil, err
	}
	pbs, err := loadPlaybooks(dir)
	if err != nil {
		return nil, err
	}
	return pbs, nil
}

// vendorCase runs n matching alerts through the HEC playbook with replicas × inFlight slots and
// checks that each made exactly one vendor call.
func (st *stack) vendorCase(ctx context.Context, name, prefix string, n, replicas, inFlight int, stages *stageTimes) (usage, hecStats, error) {
	pbs, err := st.loadVendorPlaybook()
	if err != nil {
		return usage{}, hecStats{}, err
	}
	if err := st.reset(ctx); err != nil {
		return usage{}, hecStats{}, err
	}
	if err := st.preload(ctx, prefix, n, true); err != nil {
		return usage{}, hecStats{}, err
	}
	ideal := time.Duration(float64(st.o.vendorDelay) * float64(n) / float64(replicas*inFlight))
	u, err := st.runRiposte(ctx, riposteCase{name: name, pbs: pbs, replicas: replicas, inFlight: inFlight, want: n, timeout: caseTimeout(ideal), stages: stages})
	if err != nil {
		return usage{}, hecStats{}, err
	}
	hs, err := st.verifyQuarantined(ctx, prefix, n)
	if err != nil {
		return usage{}, hecStats{}, err
	}
	return u, hs, nil
}

// verifyQuarantined checks a vendor case's n alerts: each succeeded, with one outcome, and HEC
// quarantined at least as many entities. It gives what HEC counted.
func (st *stack) verifyQuarantined(ctx context.Context, prefix string, n int) (hecStats, error) {
	if err := st.verify(ctx, expectation{ids: idsOf(prefix, n), status: "succeeded"}, true); err != nil {
		return hecStats{}, err
	}
	hs, err := st.hec.stats()
	if err != nil {
		return hecStats{}, err
	}
	if hs.EntityActions < int64(n) {
		return hecStats{}, fmt.Errorf("%d alerts succeeded but HEC saw %d quarantines", n, hs.EntityActions)
	}
	return hs, nil
}

// idealRate is what slots alerts in flight make of a vendor answering in d: slots ÷ d.
func idealRate(slots int, d time.Duration) float64 { return float64(slots) / d.Seconds() }

// vendor-bound: one HEC action answering in 50 ms, N in flight, against N ÷ 50 ms.
func (st *stack) vendorBound(ctx context.Context) (*result, error) {
	ideal := idealRate(st.o.inFlight, st.o.vendorDelay)
	n := int(ideal * st.o.duration.Seconds())
	stages := &stageTimes{}
	u, hs, err := st.vendorCase(ctx, "vendor", "vend", n, 1, st.o.inFlight, stages)
	if err != nil {
		return nil, err
	}
	r := newResult("vendor", fmt.Sprintf("vendor-bound: 1 HEC action, N=%d", st.o.inFlight), n, u, whereInProcess)
	r.setRef(fmt.Sprintf("N ÷ %s", st.o.vendorDelay), ideal)
	r.Fig = &figure{Label: "vendor-bound ÷ (N ÷ latency)", Value: r.Rate / ideal, Target: 0.92}
	r.Notes = append(r.Notes, fmt.Sprintf("HEC answered p50 %.1f / p99 %.1f ms", hs.HoldP50MS, hs.HoldP99MS),
		stages.summary(n, time.Duration(float64(st.o.inFlight)*float64(u.wall)/float64(n))))
	return r, nil
}

// replicas: the vendor-bound case with n replicas as goroutines, each its own connection,
// vendor clients, engine and queue.Run on the one durable consumer.
func (st *stack) replicaRun(ctx context.Context, replicas int, first *result) (*result, error) {
	ideal := idealRate(replicas*st.o.replicaInFlight, st.o.vendorDelay)
	n := int(ideal * st.o.duration.Seconds())
	u, hs, err := st.vendorCase(ctx, fmt.Sprintf("replicas%d", replicas), fmt.Sprintf("rep%d", replicas), n, replicas, st.o.replicaInFlight, nil)
	if err != nil {
		return nil, err
	}
	r := newResult(fmt.Sprintf("replicas-%d", replicas), fmt.Sprintf("replicas: %d × %d in flight", replicas, st.o.replicaInFlight), n, u, whereInProcess)
	r.setRef(fmt.Sprintf("%d × %d ÷ %s", replicas, st.o.replicaInFlight, st.o.vendorDelay), ideal)
	r.Notes = append(r.Notes, fmt.Sprintf("%.2f of ideal; HEC p99 %.1f ms", r.Rate/ideal, hs.HoldP99MS))
	if first != nil {
		// Scaling efficiency: thr(n) ÷ (n ÷ n₀ × thr(n₀)), n₀ the first count (1 by default).
		n0 := firstReplicas(first)
		k := float64(replicas) / float64(n0)
		r.setRef(fmt.Sprintf("%s × thr(%d)", strconv.FormatFloat(k, 'g', 3, 64), n0), k*first.Rate)
		r.Fig = &figure{Label: fmt.Sprintf("scaling efficiency, %d replicas", replicas), Value: r.Rate / r.RefRate, Target: 0.85}
	}
	return r, nil
}

func firstReplicas(r *result) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(r.Key, "replicas-"))
	return max(1, n)
}

// latency: publish → outcome at a fixed rate with the 50 ms vendor, the added p50 and p99.
func (st *stack) latency(ctx context.Context) (*result, error) {
	pbs, err := st.loadVendorPlaybook()
	if err != nil {
		return nil, err
	}
	if err := st.reset(ctx); err != nil {
		return nil, err
	}
	const warmUp = 20
	n := int(float64(st.o.rate) * st.o.duration.Seconds())
	sub, err := st.connect("riposte-bench-outcomes")
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	var mu sync.Mutex
	published := make([]time.Time, n)
	arrived := make([]time.Time, n)
	warmSeen := make(chan struct{}, warmUp)
	s, err := sub.Subscribe(st.cfg.OutcomesPrefix+".>", func(m *nats.Msg) {
		at := time.Now()
		id := m.Header.Get(queue.HeaderAlertID)
		if strings.HasPrefix(id, "warm-") {
			warmSeen <- struct{}{}
			return
		}
		i, err := strconv.Atoi(strings.TrimPrefix(id, "lat-"))
		if err != nil || i < 0 || i >= n {
			return
		}
		mu.Lock()
		if arrived[i].IsZero() {
			arrived[i] = at
		}
		mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	defer func() { _ = s.Unsubscribe() }()
	if err := sub.Flush(); err != nil {
		return nil, err
	}
	interval := time.Second / time.Duration(st.o.rate)
	stages := &stageTimes{}
	c := riposteCase{name: "latency", pbs: pbs, replicas: 1, inFlight: st.o.inFlight, want: warmUp + n,
		timeout: caseTimeout(st.o.duration), stages: stages}
	// The first alerts fetch HEC's token and open connections: not what a steady rate sees.
	c.warm = func(ctx context.Context) error {
		for i := range warmUp {
			if err := st.publishAlert(alertID("warm", i), true); err != nil {
				return err
			}
		}
		for range warmUp {
			select {
			case <-warmSeen:
			case <-time.After(30 * time.Second):
				return fmt.Errorf("warm-up outcomes did not come")
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		stages.reset()
		return st.hec.zero()
	}
	c.during = func(ctx context.Context) error {
		start := time.Now()
		for i := range n {
			if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
				time.Sleep(d)
			}
			mu.Lock()
			published[i] = time.Now()
			mu.Unlock()
			if err := st.publishAlert(alertID("lat", i), true); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		return nil
	}
	u, err := st.runRiposte(ctx, c)
	if err != nil {
		return nil, err
	}
	// The last outcome may reach the subscriber a moment after its alert is acked.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		seen := 0
		for i := range n {
			if !arrived[i].IsZero() {
				seen++
			}
		}
		mu.Unlock()
		if seen == n {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d outcomes seen", seen, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ids := append(idsOf("warm", warmUp), idsOf("lat", n)...)
	if err := st.verify(ctx, expectation{ids: ids, status: "succeeded"}, true); err != nil {
		return nil, err
	}
	hs, err := st.hec.stats()
	if err != nil {
		return nil, err
	}
	holds, err := st.hec.holds()
	if err != nil {
		return nil, err
	}
	// Added latency: publish → outcome less the time HEC itself took for that alert's call
	// (the nominal 50 ms and the fake's own lateness in sleeping it).
	total := make([]time.Duration, n)
	added := make([]time.Duration, n)
	for i := range n {
		hold, ok := holds[alertID("lat", i)]
		if !ok {
			return nil, fmt.Errorf("HEC has no call for alert %s", alertID("lat", i))
		}
		total[i] = arrived[i].Sub(published[i])
		added[i] = total[i] - hold
	}
	slices.Sort(total)
	slices.Sort(added)
	a50, a99, aMax := percentile(added, 0.50), percentile(added, 0.99), added[n-1]
	r := newResult("latency", fmt.Sprintf("latency: %d alerts/s, vendor %s", st.o.rate, st.o.vendorDelay), n, u, whereInProcess)
	r.Fig = &figure{Label: "latency: p99 added", Value: ms(a99), Unit: "ms", Target: 3, AtMost: true}
	r.P50, r.P99 = ms(a50), ms(a99)
	r.Notes = append(r.Notes,
		fmt.Sprintf("added p50 %.2f, p99 %.2f, max %.2f ms", ms(a50), ms(a99), ms(aMax)),
		fmt.Sprintf("publish → outcome p50 %.1f, p99 %.1f ms", ms(percentile(total, 0.50)), ms(percentile(total, 0.99))),
		fmt.Sprintf("HEC answered p50 %.1f / p99 %.1f ms", hs.HoldP50MS, hs.HoldP99MS),
		stages.summary(n, 0))
	return r, nil
}

// stormBatch is the storm playbook's `batch:`: half the N = 64 in flight, so a batch fills from
// the alerts in flight instead of waiting out max_wait, while the other is at HEC
// (docs/playbooks.md).
const stormBatch = "{max_size: 32, max_wait: 200ms}"

// storm: quarantines arriving all at once, without batching and then with a playbook whose step
// has batch: how many alerts each vendor call carried, and what batching did to each alert's
// time from the storm's start to its outcome.
func (st *stack) stormCase(ctx context.Context) (*result, error) {
	n := st.o.storm
	alone, err := st.stormRun(ctx, "storm-alone", "storm1", "")
	if err != nil {
		return nil, err
	}
	batched, err := st.stormRun(ctx, "storm", "storm", stormBatch)
	if err != nil {
		return nil, err
	}
	r := newResult("storm", fmt.Sprintf("storm: %d quarantines at once", n), n, batched.u, whereInProcess)
	r.Fig = &figure{Label: "storm: alerts per vendor call", Value: float64(n) / float64(batched.calls), Target: 10}
	r.Notes = append(r.Notes,
		fmt.Sprintf("batch %s: %d HEC calls for %d alerts (%.1f per call), HEC p50 %.1f / p99 %.1f ms per call; without batching %d calls (%.1f per call)",
			stormBatch, batched.calls, n, float64(n)/float64(batched.calls), batched.hs.HoldP50MS, batched.hs.HoldP99MS,
			alone.calls, float64(n)/float64(alone.calls)),
		fmt.Sprintf("storm start → outcome, batched: p50 %.0f, p99 %.0f, last %.0f ms; without batching: p50 %.0f, p99 %.0f, last %.0f ms; batching added p50 %+.0f, p99 %+.0f ms",
			ms(batched.p50), ms(batched.p99), ms(batched.last), ms(alone.p50), ms(alone.p99), ms(alone.last),
			ms(batched.p50-alone.p50), ms(batched.p99-alone.p99)),
		fmt.Sprintf("CPU s per 1k alerts without batching %.3f", alone.u.cpu.Seconds()*1000/float64(n)))
	return r, nil
}

// stormOutcome is one storm run: its usage, HEC's calls, and each alert's time from the
// storm's start (the window opening on the stored alerts) to its outcome reaching a subscriber.
type stormOutcome struct {
	u              usage
	hs             hecStats
	calls          int64
	p50, p99, last time.Duration
}

// stormRun runs the storm once, on the quarantine playbook with batch (or without it when batch
// is ""), and checks each alert's outcome and that HEC quarantined each alert's entity.
func (st *stack) stormRun(ctx context.Context, name, prefix, batch string) (stormOutcome, error) {
	n := st.o.storm
	var so stormOutcome
	dir, err := st.playbookDir(name)
	if err != nil {
		return so, err
	}
	if err := stormPlaybook(dir, batch); err != nil {
		return so, err
	}
	pbs, err := loadPlaybooks(dir)
	if err != nil {
		return so, err
	}
	if err := st.reset(ctx); err != nil {
		return so, err
	}
	if err := st.preload(ctx, prefix, n, true); err != nil {
		return so, err
	}
	sub, err := st.connect("riposte-bench-storm-outcomes")
	if err != nil {
		return so, err
	}
	defer sub.Close()
	var mu sync.Mutex
	arrived := make(map[string]time.Time, n)
	s, err := sub.Subscribe(st.cfg.OutcomesPrefix+".>", func(m *nats.Msg) {
		at := time.Now()
		mu.Lock()
		if id := m.Header.Get(queue.HeaderAlertID); arrived[id].IsZero() {
			arrived[id] = at
		}
		mu.Unlock()
	})
	if err != nil {
		return so, err
	}
	defer func() { _ = s.Unsubscribe() }()
	if err := sub.Flush(); err != nil {
		return so, err
	}
	var began time.Time
	ideal := time.Duration(float64(st.o.vendorDelay) * float64(n) / float64(st.o.inFlight))
	c := riposteCase{name: name, pbs: pbs, replicas: 1, inFlight: st.o.inFlight, want: n, timeout: caseTimeout(ideal),
		during: func(context.Context) error { began = time.Now(); return nil }}
	if so.u, err = st.runRiposte(ctx, c); err != nil {
		return so, err
	}
	if err := st.verify(ctx, expectation{ids: idsOf(prefix, n), status: "succeeded"}, true); err != nil {
		return so, err
	}
	// The last outcome may reach the subscriber a moment after its alert is acked.
	var took []time.Duration
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		took = took[:0]
		for _, id := range idsOf(prefix, n) {
			if at, ok := arrived[id]; ok {
				took = append(took, at.Sub(began))
			}
		}
		mu.Unlock()
		if len(took) == n {
			break
		}
		if time.Now().After(deadline) {
			return so, fmt.Errorf("%s: %d of %d outcomes seen", name, len(took), n)
		}
	}
	slices.Sort(took)
	so.p50, so.p99, so.last = percentile(took, 0.50), percentile(took, 0.99), took[n-1]
	if so.hs, err = st.hec.stats(); err != nil {
		return so, err
	}
	so.calls = so.hs.EntityActions
	holds, err := st.hec.holds() // by entity: the bench's entity ids are its alert ids
	if err != nil {
		return so, err
	}
	for _, id := range idsOf(prefix, n) {
		if _, ok := holds[id]; !ok {
			return so, fmt.Errorf("%s: alert %s succeeded but HEC had no quarantine of its entity", name, id)
		}
	}
	return so, nil
}
