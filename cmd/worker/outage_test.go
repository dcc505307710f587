package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/actions/checkpoint"
	"github.com/riposte-soar/riposte/internal/queue"
)

const outagePlaybooks = "testdata/outage"

const outageFor = 45 * time.Second

// outcomeClock notes when each alert's outcome arrived, by alert id.
type outcomeClock struct {
	mu      sync.Mutex
	arrived map[string]time.Time
	status  map[string]string
}

func watchOutcomes(t *testing.T, s *stack, subject string) *outcomeClock {
	t.Helper()
	c := &outcomeClock{arrived: map[string]time.Time{}, status: map[string]string{}}
	sub, err := s.nc.Subscribe(subject, func(m *nats.Msg) {
		c.mu.Lock()
		defer c.mu.Unlock()
		id := m.Header.Get(queue.HeaderAlertID)
		c.arrived[id] = time.Now()
		var o struct {
			Status string `json:"status"`
		}
		_ = json.Unmarshal(m.Data, &o)
		c.status[id] = o.Status
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := s.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *outcomeClock) get(id string) (time.Time, string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.arrived[id]
	return at, c.status[id], ok
}

func (c *outcomeClock) count(status string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, st := range c.status {
		if st == status {
			n++
		}
	}
	return n
}

func quarantineRequests(hec *checkpoint.Fake) int {
	n := 0
	for _, r := range hec.Requests() {
		if r.Method == "POST" {
			n++
		}
	}
	return n
}

// HEC down for 45 s under 50 alerts: its breaker opens, so the outage costs at most two HEC
// requests per alert; once HEC is back all 50 succeed, and none is dead-lettered.
func TestBreakerRidesOutAnOutage(t *testing.T) {
	t.Parallel()
	s := startStack(t, outagePlaybooks, func(st *settings) {
		st.breaker = actions.GuardSettings{Failures: 5, OpenFor: 3 * time.Second, MaxOpenFor: 6 * time.Second,
			SlowAfter: 5 * time.Second, MaxCalls: st.maxInFlight / 2}
	})
	hec := s.vendors.hec
	outcomes := watchOutcomes(t, s, "soar.outcomes.hec-quarantine")
	hec.FailNextWith("/action/entity", -1, checkpoint.Failure{Status: 503, Message: "service unavailable"})
	down := time.Now()
	for i := range 50 {
		id := fmt.Sprintf("down-%d", i)
		s.publish("soar.alerts.checkpoint.phishing", id, fmt.Sprintf(`{"entityId":"ent-%d"}`, i), nil)
	}
	time.Sleep(outageFor - time.Since(down))
	during := quarantineRequests(hec)
	hec.ClearFailures()
	t.Logf("HEC received %d quarantine requests from 50 alerts during a %s outage", during, outageFor)
	if during > 2*50 {
		t.Errorf("the outage cost %d HEC requests for 50 alerts, more than 2 each", during)
	}
	s.eventuallyWithin(time.Minute, "every alert's outcome after the outage", func() bool { return outcomes.count("succeeded") == 50 })
	s.settled()
	if n := s.deadLetters(); n != 0 {
		t.Errorf("%d alerts dead-lettered", n)
	}
	if outcomes.count("failed") != 0 {
		t.Errorf("%d failed outcomes published", outcomes.count("failed"))
	}
	for i := range 50 {
		if hec.Effects("quarantine", fmt.Sprintf("ent-%d", i)) != 1 {
			t.Errorf("ent-%d quarantined %d times, want once", i, hec.Effects("quarantine", fmt.Sprintf("ent-%d", i)))
		}
	}
}

// HEC hangs for 3 minutes while its alerts keep coming at 10 a second: GravityZone alerts
// published meanwhile finish with their normal latency, as their slots and their place on the
// consumer are not taken, and every HEC alert succeeds once HEC is back.
func TestHangingVendorStallsNoOther(t *testing.T) {
	t.Parallel()
	const hangFor = 3 * time.Minute
	s := startStack(t, outagePlaybooks, func(st *settings) {
		st.breaker = actions.GuardSettings{Failures: 5, OpenFor: 5 * time.Second, MaxOpenFor: 20 * time.Second,
			SlowAfter: 2 * time.Second, MaxCalls: st.maxInFlight / 2}
	})
	hec, gz := s.vendors.hec, s.vendors.gz
	hecOutcomes := watchOutcomes(t, s, "soar.outcomes.hec-quarantine")
	gzOutcomes := watchOutcomes(t, s, "soar.outcomes.gz-isolate")

	var mu sync.Mutex
	published := map[string]time.Time{}
	publishGZ := func(id string) {
		mu.Lock()
		published[id] = time.Now()
		mu.Unlock()
		s.publish("soar.alerts.gravityzone.incident", id, fmt.Sprintf(`{"endpointId":"ep-%s"}`, id), nil)
	}
	latency := func(id string) (time.Duration, bool) {
		at, _, ok := gzOutcomes.get(id)
		mu.Lock()
		defer mu.Unlock()
		return at.Sub(published[id]), ok
	}

	// Normal latency first.
	var normal time.Duration
	for i := range 5 {
		id := fmt.Sprintf("gz-before-%d", i)
		publishGZ(id)
		s.eventually(id, func() bool { _, ok := latency(id); return ok })
		d, _ := latency(id)
		normal = max(normal, d)
	}

	hec.FailNextWith("/action/entity", -1, checkpoint.Failure{Delay: time.Hour})
	ctx, stop := context.WithTimeout(context.Background(), hangFor)
	defer stop()
	hecTick, gzTick := time.NewTicker(100*time.Millisecond), time.NewTicker(time.Second)
	defer hecTick.Stop()
	defer gzTick.Stop()
	var hecIDs, gzIDs []string
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hecTick.C:
			id := fmt.Sprintf("hec-%d", len(hecIDs))
			hecIDs = append(hecIDs, id)
			s.publish("soar.alerts.checkpoint.phishing", id, fmt.Sprintf(`{"entityId":"ent-%s"}`, id), nil)
		case <-gzTick.C:
			id := fmt.Sprintf("gz-%d", len(gzIDs))
			gzIDs = append(gzIDs, id)
			publishGZ(id)
		}
	}
	hec.ClearFailures()
	t.Logf("during the hang: %d HEC and %d GravityZone alerts; GravityZone latency before it %v", len(hecIDs), len(gzIDs), normal)

	// Every GravityZone alert finished during the hang, as fast as before it: with room for a
	// 2-core machine that runs the rest of the suite meanwhile, but far below what waiting
	// behind the hanging vendor costs (the 1 s attempts, retried, and the breaker's 5 s).
	limit := normal + 5*time.Second
	var worst time.Duration
	for _, id := range gzIDs[:len(gzIDs)-2] {
		d, ok := latency(id)
		if !ok {
			t.Errorf("GravityZone alert %s had no outcome during the hang", id)
			continue
		}
		worst = max(worst, d)
		if d > limit {
			t.Errorf("GravityZone alert %s took %v during the hang, over %v", id, d, limit)
		}
	}
	t.Logf("worst GravityZone latency during the hang: %v", worst)
	if !gz.Isolated("ep-" + gzIDs[0]) {
		t.Error("GravityZone was not called")
	}

	s.eventuallyWithin(2*time.Minute, "every HEC alert's outcome after the hang", func() bool {
		return hecOutcomes.count("succeeded") == len(hecIDs)
	})
	if n := hecOutcomes.count("failed"); n != 0 {
		t.Errorf("%d HEC alerts failed", n)
	}
	s.settled()
	if n := s.deadLetters(); n != 0 {
		t.Errorf("%d alerts dead-lettered", n)
	}
}
