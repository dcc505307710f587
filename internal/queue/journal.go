package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Journal remembers completed steps in a JetStream key-value bucket, so a redelivered alert does
// not call a vendor twice for a step that already succeeded.
type Journal struct {
	kv jetstream.KeyValue
}

// Get returns the record stored under key; ok is false when there is none.
func (j *Journal) Get(ctx context.Context, key string) ([]byte, bool, error) {
	e, err := j.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read step journal %q: %w", key, err)
	}
	return e.Value(), true, nil
}

// Put stores a record under key.
func (j *Journal) Put(ctx context.Context, key string, value []byte) error {
	if _, err := j.kv.Put(ctx, key, value); err != nil {
		err = fmt.Errorf("write step journal %q: %w", key, err)
		if errors.Is(err, nats.ErrMaxPayload) {
			return unstorable{err}
		}
		return err
	}
	return nil
}

// unstorable is a write the server can never take (larger than its max payload): trying again
// cannot help, and says so to whoever retries (engine.Journal's Permanent).
type unstorable struct{ error }

func (unstorable) Permanent() bool { return true }
func (u unstorable) Unwrap() error { return u.error }

// DeliveryCounts are what the journal remembers of an alert's earlier deliveries.
type DeliveryCounts struct {
	Failures int `json:"failures"` // ended in a vendor failure: counted against max_deliver
	Parks    int `json:"parks"`    // held back for a vendor's breaker or bulkhead: counted against nothing
}

// countsKey is where the journal counts an alert's deliveries; the "f" keeps it apart from the
// step records' bare hashes.
func countsKey(journalID string) string {
	sum := sha256.Sum256([]byte("failures\x00" + journalID))
	return "f" + hex.EncodeToString(sum[:])
}

// Counts reads what the earlier deliveries of the alert came to.
func (j *Journal) Counts(ctx context.Context, journalID string) (DeliveryCounts, error) {
	var c DeliveryCounts
	e, err := j.kv.Get(ctx, countsKey(journalID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read delivery counts: %w", err)
	}
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return c, fmt.Errorf("read delivery counts: %w", err)
	}
	return c, nil
}

// Count adds one delivery to the alert's counts (change says which) and returns them. The
// update is checked against the revision read, so two replicas counting at once (a lost
// lease) both count.
func (j *Journal) Count(ctx context.Context, journalID string, change func(*DeliveryCounts)) (DeliveryCounts, error) {
	key := countsKey(journalID)
	for range 5 {
		var c DeliveryCounts
		e, err := j.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			change(&c)
			b, _ := json.Marshal(c)
			if _, err := j.kv.Create(ctx, key, b); err == nil {
				return c, nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return c, fmt.Errorf("count delivery: %w", err)
			}
		case err != nil:
			return c, fmt.Errorf("count delivery: %w", err)
		default:
			_ = json.Unmarshal(e.Value(), &c)
			change(&c)
			b, _ := json.Marshal(c)
			if _, err := j.kv.Update(ctx, key, b, e.Revision()); err == nil {
				return c, nil
			}
		}
	}
	return DeliveryCounts{}, errors.New("count delivery: the counts kept changing under us")
}

// ClearCounts forgets the alert's delivery counts, once it has an end.
func (j *Journal) ClearCounts(ctx context.Context, journalID string) error {
	if err := j.kv.Purge(ctx, countsKey(journalID)); err != nil {
		return fmt.Errorf("clear delivery counts: %w", err)
	}
	return nil
}
