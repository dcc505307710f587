package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

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
		return fmt.Errorf("write step journal %q: %w", key, err)
	}
	return nil
}

// failureKey is where the journal counts an alert's deliveries that ended in a vendor failure;
// the "f" keeps it apart from the step records' bare hashes.
func failureKey(journalID string) string {
	sum := sha256.Sum256([]byte("failures\x00" + journalID))
	return "f" + hex.EncodeToString(sum[:])
}

// Failures is how many deliveries of the alert ended in a vendor failure so far.
func (j *Journal) Failures(ctx context.Context, journalID string) (int, error) {
	e, err := j.kv.Get(ctx, failureKey(journalID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read failure count: %w", err)
	}
	return strconv.Atoi(string(e.Value()))
}

// AddFailure counts one more delivery that ended in a vendor failure and returns the count.
// The update is checked against the revision read, so two replicas counting at once (a lost
// lease) both count.
func (j *Journal) AddFailure(ctx context.Context, journalID string) (int, error) {
	key := failureKey(journalID)
	for range 5 {
		e, err := j.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if _, err := j.kv.Create(ctx, key, []byte("1")); err == nil {
				return 1, nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return 0, fmt.Errorf("count failure: %w", err)
			}
		case err != nil:
			return 0, fmt.Errorf("count failure: %w", err)
		default:
			n, _ := strconv.Atoi(string(e.Value()))
			if _, err := j.kv.Update(ctx, key, []byte(strconv.Itoa(n+1)), e.Revision()); err == nil {
				return n + 1, nil
			}
		}
	}
	return 0, errors.New("count failure: the count kept changing under us")
}

// ClearFailures forgets the alert's failure count, once it has an end.
func (j *Journal) ClearFailures(ctx context.Context, journalID string) error {
	if err := j.kv.Purge(ctx, failureKey(journalID)); err != nil {
		return fmt.Errorf("clear failure count: %w", err)
	}
	return nil
}
