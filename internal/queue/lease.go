package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// A lease is a claim, shared by every replica through the journal bucket, that one worker is
// doing something (calling a vendor for a step, running a playbook for a concurrency key) until
// a time. The holder renews it; a holder that crashed or was cut off stops renewing, and its
// lease lapses. Taking one is a key-value create, or a revision-checked update of a lapsed one,
// never a blind put, so two replicas cannot both hold it.

// leaseRecord is what a lease key holds.
type leaseRecord struct {
	Owner string `json:"owner"`
	Until int64  `json:"until"` // Unix milliseconds
	// Output makes a step's claim, which sits where the step's journal record will be, a
	// record that workers from before step claims held records cannot read (a step record's
	// "output" is an object): during a rolling upgrade such a worker, finding a claim there,
	// runs the step as for an unreadable record instead of taking it for done.
	Output string `json:"output"`
}

func leaseKey(name string) string {
	sum := sha256.Sum256([]byte("lease\x00" + name))
	return "l" + hex.EncodeToString(sum[:])
}

// Leases hands out leases of a fixed length on the journal bucket, for one worker.
type Leases struct {
	kv    jetstream.KeyValue
	owner string
	ttl   time.Duration
	now   func() time.Time
	log   *zap.Logger
}

// Leases returns leases of length ttl held in the name of owner (unique per worker process).
// Clocks of the replicas must agree to well within ttl.
func (j *Journal) Leases(owner string, ttl time.Duration, log *zap.Logger) *Leases {
	return &Leases{kv: j.kv, owner: owner, ttl: ttl, now: time.Now, log: log}
}

// Lock takes the lease called name. When another holder's lease is live, it returns wait, about
// how long until it lapses, and nothing else. When taken, the lease is renewed until release is
// called; held ends (is cancelled) if the lease is lost meanwhile: renewals failed until it
// lapsed, or another replica took it.
func (l *Leases) Lock(ctx context.Context, name string) (held context.Context, release func(), wait time.Duration, err error) {
	c, _, wait, err := l.take(ctx, name, leaseKey(name), nil)
	if err != nil || wait > 0 {
		return nil, nil, wait, err
	}
	return c.held, c.release, 0, nil
}

// ClaimStep is engine.StepClaimer's: the claim on a step is a lease kept under the key of the
// step's journal record, which replaces it when the step succeeds. So a claim taken tells, with
// no read, that the step has no record, and the record ends the claim, with no delete.
func (l *Leases) ClaimStep(ctx context.Context, key string, usable func([]byte) bool) (held context.Context,
	record func(context.Context, []byte) error, release func(), recorded bool, wait time.Duration, err error) {
	c, recorded, wait, err := l.take(ctx, "step "+key, key, usable)
	if err != nil || recorded || wait > 0 {
		return nil, nil, nil, recorded, wait, err
	}
	return c.held, c.record, c.release, false, 0, nil
}

// take takes the lease under key. With usable, key may hold a step's record instead of a lease:
// recorded says it does and usable accepted it; one usable refuses is taken over.
func (l *Leases) take(ctx context.Context, name, key string, usable func([]byte) bool) (c *claim, recorded bool, wait time.Duration, err error) {
	rec := l.record()
	rev, err := l.kv.Create(ctx, key, rec)
	if errors.Is(err, jetstream.ErrKeyExists) {
		rev, recorded, wait, err = l.takeOver(ctx, key, rec, usable)
	}
	if err != nil {
		return nil, false, 0, fmt.Errorf("take lease: %w", err)
	}
	if recorded || wait > 0 {
		return nil, recorded, wait, nil
	}
	return l.keep(ctx, name, key, rev), false, 0, nil
}

// takeOver takes a lease whose holder let it lapse; a live one is reported as wait, a step's
// record usable accepts as recorded.
func (l *Leases) takeOver(ctx context.Context, key string, rec []byte, usable func([]byte) bool) (uint64, bool, time.Duration, error) {
	e, err := l.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		rev, err := l.kv.Create(ctx, key, rec)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, false, time.Second, nil // someone was quicker
		}
		return rev, false, 0, err
	}
	if err != nil {
		return 0, false, 0, fmt.Errorf("read lease: %w", err)
	}
	var cur leaseRecord
	isLease := json.Unmarshal(e.Value(), &cur) == nil && cur.Owner != ""
	switch {
	case !isLease && usable != nil && usable(e.Value()):
		return 0, true, 0, nil
	case isLease:
		if left := time.UnixMilli(cur.Until).Sub(l.now()); left > 0 {
			return 0, false, left, nil
		}
	}
	rev, err := l.kv.Update(ctx, key, rec, e.Revision())
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, false, time.Second, nil // another replica took over the lapsed lease first
	}
	if err != nil {
		return 0, false, 0, fmt.Errorf("take over lease: %w", err)
	}
	return rev, false, 0, nil
}

func (l *Leases) record() []byte {
	b, _ := json.Marshal(leaseRecord{Owner: l.owner, Until: l.now().Add(l.ttl).UnixMilli(), Output: "claimed, not done"})
	return b
}

// claim is a lease taken: renewed every third of its length until it is released, or a step's
// record takes its place.
type claim struct {
	l         *Leases
	name, key string
	held      context.Context
	lost      context.CancelFunc
	stop      chan struct{}
	done      chan struct{}
	stopOnce  sync.Once

	mu    sync.Mutex // serialises renewals, the record and the release on rev
	rev   uint64
	until time.Time
	ended bool // recorded or released: nothing more to renew or delete
}

func (l *Leases) keep(ctx context.Context, name, key string, rev uint64) *claim {
	c := &claim{l: l, name: name, key: key, rev: rev, until: l.now().Add(l.ttl), stop: make(chan struct{}), done: make(chan struct{})}
	c.held, c.lost = context.WithCancel(ctx)
	go c.renew(context.WithoutCancel(ctx))
	return c
}

func (c *claim) renew(ctx context.Context) {
	defer close(c.done)
	l := c.l
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		if c.ended {
			c.mu.Unlock()
			return
		}
		rctx, cancel := context.WithTimeout(ctx, l.ttl/3)
		next, err := l.kv.Update(rctx, c.key, l.record(), c.rev)
		cancel()
		if err == nil {
			c.rev, c.until = next, l.now().Add(l.ttl)
			c.mu.Unlock()
			continue
		}
		gone := errors.Is(err, jetstream.ErrKeyRevisionMismatch) || !l.now().Before(c.until)
		c.mu.Unlock()
		if gone {
			// Taken by another replica, or lapsed while we could not renew it: whoever
			// holds it now must not find us still at work.
			l.log.Warn("lease lost; stopping the work it covered", zap.String("lease", c.name), zap.Error(err))
			c.lost()
			return
		}
	}
}

// record writes a step's record in the claim's place, ending the claim. Over a claim another
// replica has taken since, it is written all the same: the vendor has acted.
func (c *claim) record(ctx context.Context, value []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return errors.New("write step journal: the step's claim was already released")
	}
	rev, err := c.l.kv.Update(ctx, c.key, value, c.rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		rev, err = c.l.kv.Put(ctx, c.key, value)
	}
	if err != nil {
		err = fmt.Errorf("write step journal %q: %w", c.key, err)
		if errors.Is(err, nats.ErrMaxPayload) {
			return unstorable{err}
		}
		return err
	}
	c.rev, c.ended = rev, true
	return nil
}

// release stops renewing and, unless a record took its place, deletes the lease,
// revision-checked, so that a lease another replica took over is left to it.
func (c *claim) release() {
	c.stopOnce.Do(func() { close(c.stop) })
	<-c.done
	c.lost()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.ended = true
	rctx, cancel := context.WithTimeout(context.WithoutCancel(c.held), 5*time.Second)
	defer cancel()
	_ = c.l.kv.Delete(rctx, c.key, jetstream.LastRevision(c.rev))
}
