package actions

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Breaker states, as logs and metrics name them.
const (
	BreakerClosed   = "closed"
	BreakerHalfOpen = "half_open"
	BreakerOpen     = "open"
)

// GuardSettings shape how the dispatcher protects the worker from a vendor that is down or
// hanging, and the vendor from the worker.
//
// The breaker: after Failures retryable failures in a row the vendor's steps fail fast, without a
// request, for OpenFor; then one probe goes through (half open). A probe that fails opens the
// breaker again for twice as long, up to MaxOpenFor, so a long outage costs a request every few
// minutes rather than one per alert; a probe that succeeds closes it.
//
// The bulkhead: while the vendor is struggling (its breaker is not closed, its last call failed,
// or a call has been waiting longer than SlowAfter), at most MaxCalls of its calls run at once;
// a step beyond that gives its alert back to the queue instead of holding a worker slot, so one
// vendor's outage cannot take the slots other vendors' alerts need.
type GuardSettings struct {
	Failures   int
	OpenFor    time.Duration
	MaxOpenFor time.Duration
	SlowAfter  time.Duration
	MaxCalls   int // 0: no bulkhead
}

// DefaultGuardSettings are the worker's defaults for a replica of maxInFlight slots: a failing
// vendor may hold at most half of them.
func DefaultGuardSettings(maxInFlight int) GuardSettings {
	return GuardSettings{
		Failures:   5,
		OpenFor:    15 * time.Second,
		MaxOpenFor: 5 * time.Minute,
		SlowAfter:  5 * time.Second,
		MaxCalls:   max(1, maxInFlight/2),
	}
}

// HeldBackError is a step that made no request because its vendor's breaker is open or its
// bulkhead full: retryable, without counting as a vendor failure. After says when the vendor
// will next be tried.
type HeldBackError struct {
	Vendor string
	Why    string // "circuit open", "probe in flight", "vendor struggling"
	After  time.Duration
	Last   error // the failure that opened the breaker, when known
}

func (e *HeldBackError) Error() string {
	msg := fmt.Sprintf("%s held back (%s); next try in %s", e.Vendor, e.Why, e.After.Round(time.Millisecond))
	if e.Last != nil {
		msg += ": last failure: " + e.Last.Error()
	}
	return msg
}

func (e *HeldBackError) Unwrap() error { return e.Last }

// guard is one vendor's breaker and bulkhead.
type guard struct {
	vendor string
	s      GuardSettings
	now    func() time.Time
	notify func(vendor, from, to string)

	mu       sync.Mutex
	state    string
	failures int // consecutive retryable failures
	openFor  time.Duration
	until    time.Time // end of the open state
	probing  bool
	lastErr  error
	inflight int
	oldest   map[uint64]time.Time // start of each call in flight
	nextCall uint64
}

func newGuard(vendor string, s GuardSettings, now func() time.Time, notify func(vendor, from, to string)) *guard {
	if s.Failures <= 0 {
		s.Failures = 5
	}
	if s.OpenFor <= 0 {
		s.OpenFor = 15 * time.Second
	}
	if s.MaxOpenFor < s.OpenFor {
		s.MaxOpenFor = s.OpenFor
	}
	return &guard{vendor: vendor, s: s, now: now, notify: notify, state: BreakerClosed, openFor: s.OpenFor, oldest: map[uint64]time.Time{}}
}

// call is one admitted vendor call; end reports how it went.
type call struct {
	g     *guard
	id    uint64
	probe bool
}

// admit lets a call through, or says why not and for how long.
func (g *guard) admit() (*call, *HeldBackError) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	probe := false
	switch g.state {
	case BreakerOpen:
		if now.Before(g.until) {
			return nil, &HeldBackError{Vendor: g.vendor, Why: "circuit open", After: g.until.Sub(now), Last: g.lastErr}
		}
		g.setState(BreakerHalfOpen)
		fallthrough
	case BreakerHalfOpen:
		if g.probing {
			// The probe's answer decides; until it comes, the others wait a full open interval.
			return nil, &HeldBackError{Vendor: g.vendor, Why: "probe in flight", After: g.openFor, Last: g.lastErr}
		}
		g.probing, probe = true, true
	}
	if !probe && g.s.MaxCalls > 0 && g.inflight >= g.s.MaxCalls && g.struggling(now) {
		return nil, &HeldBackError{Vendor: g.vendor, Why: "vendor struggling: too many calls waiting on it", After: g.s.OpenFor, Last: g.lastErr}
	}
	g.nextCall++
	g.inflight++
	g.oldest[g.nextCall] = now
	return &call{g: g, id: g.nextCall, probe: probe}, nil
}

// struggling: the breaker is not closed, the last call failed, or a call is taking long.
func (g *guard) struggling(now time.Time) bool {
	if g.state != BreakerClosed || g.failures > 0 {
		return true
	}
	for _, began := range g.oldest {
		if now.Sub(began) > g.s.SlowAfter {
			return true
		}
	}
	return false
}

// end records how a call ended: nil or a permanent error means the vendor answered; a
// cancellation (shutdown) says nothing about it; anything else is a failure. For a probe that
// failed it returns how long the breaker is open again; else 0.
func (c *call) end(err error) time.Duration {
	g := c.g
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inflight--
	delete(g.oldest, c.id)
	if c.probe {
		g.probing = false
	}
	switch {
	case err != nil && errors.Is(err, context.Canceled):
		return 0
	case err == nil || IsPermanent(err):
		g.failures, g.lastErr = 0, nil
		if g.state != BreakerClosed {
			g.openFor = g.s.OpenFor
			g.setState(BreakerClosed)
		}
		return 0
	}
	g.lastErr = err
	switch {
	case c.probe:
		g.openFor = min(g.openFor*2, g.s.MaxOpenFor)
		g.open()
		return g.openFor
	case g.state == BreakerClosed:
		g.failures++
		if g.failures >= g.s.Failures {
			g.open()
		}
	}
	return 0
}

func (g *guard) open() {
	g.until = g.now().Add(g.openFor)
	g.setState(BreakerOpen)
}

func (g *guard) setState(to string) {
	if g.state == to {
		return
	}
	from := g.state
	g.state = to
	if g.notify != nil {
		g.notify(g.vendor, from, to)
	}
}

// State is the breaker's state now.
func (g *guard) State() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state
}
