package queue

import (
	"context"
	"errors"
	"fmt"

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
