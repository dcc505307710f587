package main

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/riposte-soar/riposte/internal/engine"
)

// Where an alert's time goes inside riposte, from the seams the engine already has (its Journal
// and Locker interfaces, the handler, the vendor's HTTP transport, the queue's observer): the
// wall time of each stage, summed over a case's alerts. Waiting is invisible to a CPU profile;
// this shows it.

type stage int

const (
	stageSlot    stage = iota // queue: delivery received → ack sent (decode, the wait for a slot, handler, then off the slot outcome PubAck and ack; the ack's confirmation is awaited later)
	stageHandler              // the handler: engine.Process and encoding the outcomes
	stageClaim                // Locker.ClaimStep: the step's claim (a key-value create, where no record is)
	stageRead                 // Journal.Get: has the step already succeeded? (not on a step's path since claims hold records)
	stageVendor               // the HEC request, as the client saw it
	stageWrite                // the step's record, written over its claim (a revision-checked update)
	stageRelease              // the claim's release (stops its renewal; deletes the claim only when no record replaced it)
	stageCount
)

type stageTimes struct {
	sum [stageCount]atomic.Int64
	n   [stageCount]atomic.Int64
}

func (s *stageTimes) add(st stage, d time.Duration) {
	if s == nil {
		return
	}
	s.sum[st].Add(int64(d))
	s.n[st].Add(1)
}

// mean is the average wall time of one occurrence of the stage.
func (s *stageTimes) mean(st stage) time.Duration {
	n := s.n[st].Load()
	if n == 0 {
		return 0
	}
	return time.Duration(s.sum[st].Load() / n)
}

// perAlert is the stage's total time divided by the alerts: what one alert spends in it.
func (s *stageTimes) perAlert(st stage, alerts int) time.Duration {
	return time.Duration(s.sum[st].Load() / int64(alerts))
}

// summary says, in milliseconds per alert, where an alert's time went. cycle is how long a slot
// took per alert in all (slots × wall ÷ alerts). A slot is held from its reservation, once the
// pull's goroutine has decoded a delivery, to the handler's decision (queue.Run's
// slot.release): what of the cycle is not the handler is the wait for the pull to bring a freed
// slot its next alert, decoded. The outcome's PubAck and the ack come after, off the slot. A
// cycle of 0 leaves the cycle out (a case not bound by its slots).
func (s *stageTimes) summary(alerts int, cycle time.Duration) string {
	p := func(st stage) float64 { return ms(s.perAlert(st, alerts)) }
	delivery, handler := p(stageSlot), p(stageHandler)
	out := "per alert, ms: "
	if cycle > 0 {
		out += fmt.Sprintf("slot cycle %.2f = handler %.2f + decode and waiting for a pull %.2f; ", ms(cycle), handler, ms(cycle)-handler)
	}
	return out + fmt.Sprintf("delivery %.2f = handler %.2f (claim %.2f, journal read %.2f, HEC %.2f, journal write %.2f, release %.2f, engine %.2f) + decode, wait for a slot, and off the slot outcome PubAck and ack, %.2f",
		delivery, handler, p(stageClaim), p(stageRead), p(stageVendor), p(stageWrite), p(stageRelease),
		handler-p(stageClaim)-p(stageRead)-p(stageVendor)-p(stageWrite)-p(stageRelease), delivery-handler)
}

// reset forgets what was timed so far (the latency case's warm-up).
func (s *stageTimes) reset() {
	for i := range stageCount {
		s.sum[i].Store(0)
		s.n[i].Store(0)
	}
}

type timedJournal struct {
	j engine.Journal
	s *stageTimes
}

func (t timedJournal) Get(ctx context.Context, key string) ([]byte, bool, error) {
	began := time.Now()
	v, ok, err := t.j.Get(ctx, key)
	t.s.add(stageRead, time.Since(began))
	return v, ok, err
}

func (t timedJournal) Put(ctx context.Context, key string, value []byte) error {
	began := time.Now()
	err := t.j.Put(ctx, key, value)
	t.s.add(stageWrite, time.Since(began))
	return err
}

type timedLocker struct {
	l engine.Locker
	s *stageTimes
}

func (t timedLocker) Lock(ctx context.Context, name string) (context.Context, func(), time.Duration, error) {
	began := time.Now()
	held, release, wait, err := t.l.Lock(ctx, name)
	t.s.add(stageClaim, time.Since(began))
	release = t.timedRelease(release)
	return held, release, wait, err
}

func (t timedLocker) ClaimStep(ctx context.Context, key string, usable func([]byte) bool) (context.Context,
	func(context.Context, []byte) error, func(), bool, time.Duration, error) {
	began := time.Now()
	held, record, release, recorded, wait, err := t.l.ClaimStep(ctx, key, usable)
	t.s.add(stageClaim, time.Since(began))
	if record != nil {
		inner := record
		record = func(ctx context.Context, b []byte) error {
			began := time.Now()
			err := inner(ctx, b)
			t.s.add(stageWrite, time.Since(began))
			return err
		}
	}
	release = t.timedRelease(release)
	return held, record, release, recorded, wait, err
}

// timedRelease times release (nil: none) into the release stage.
func (t timedLocker) timedRelease(release func()) func() {
	if release == nil {
		return nil
	}
	return func() {
		began := time.Now()
		release()
		t.s.add(stageRelease, time.Since(began))
	}
}

// timedVendor times every vendor request into the stages.
type timedVendor struct {
	next http.RoundTripper
	s    *stageTimes
}

func (t timedVendor) RoundTrip(r *http.Request) (*http.Response, error) {
	began := time.Now()
	resp, err := t.next.RoundTrip(r)
	t.s.add(stageVendor, time.Since(began))
	return resp, err
}
