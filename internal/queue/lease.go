package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

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
	key := leaseKey(name)
	rec := l.record()
	rev, err := l.kv.Create(ctx, key, rec)
	if errors.Is(err, jetstream.ErrKeyExists) {
		rev, wait, err = l.takeOver(ctx, key, rec)
	}
	if err != nil {
		return nil, nil, 0, fmt.Errorf("take lease: %w", err)
	}
	if wait > 0 {
		return nil, nil, wait, nil
	}
	return l.keep(ctx, name, key, rev)
}

// takeOver takes a lease whose holder let it lapse; a live one is reported as wait.
func (l *Leases) takeOver(ctx context.Context, key string, rec []byte) (uint64, time.Duration, error) {
	e, err := l.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		rev, err := l.kv.Create(ctx, key, rec)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, time.Second, nil // someone was quicker
		}
		return rev, 0, err
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read lease: %w", err)
	}
	var cur leaseRecord
	if json.Unmarshal(e.Value(), &cur) == nil {
		if left := time.UnixMilli(cur.Until).Sub(l.now()); left > 0 {
			return 0, left, nil
		}
	}
	rev, err := l.kv.Update(ctx, key, rec, e.Revision())
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, time.Second, nil // another replica took over the lapsed lease first
	}
	if err != nil {
		return 0, 0, fmt.Errorf("take over lease: %w", err)
	}
	return rev, 0, nil
}

func (l *Leases) record() []byte {
	b, _ := json.Marshal(leaseRecord{Owner: l.owner, Until: l.now().Add(l.ttl).UnixMilli()})
	return b
}

// keep renews a taken lease every third of its length until released.
func (l *Leases) keep(ctx context.Context, name, key string, rev uint64) (context.Context, func(), time.Duration, error) {
	held, lost := context.WithCancel(ctx)
	stop := make(chan struct{})
	done := make(chan struct{})
	until := l.now().Add(l.ttl)
	go func() {
		defer close(done)
		t := time.NewTicker(l.ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.ttl/3)
			next, err := l.kv.Update(rctx, key, l.record(), rev)
			cancel()
			if err == nil {
				rev, until = next, l.now().Add(l.ttl)
				continue
			}
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || !l.now().Before(until) {
				// Taken by another replica, or lapsed while we could not renew it: whoever
				// holds it now must not find us still at work.
				l.log.Warn("lease lost; stopping the work it covered", zap.String("lease", name), zap.Error(err))
				lost()
				return
			}
		}
	}()
	release := func() {
		close(stop)
		<-done
		lost()
		// Revision-checked, so a lease another replica took over is left to it.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = l.kv.Delete(rctx, key, jetstream.LastRevision(rev))
	}
	return held, release, 0, nil
}
