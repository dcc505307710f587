package queue_test

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/queue"
	"github.com/riposte-soar/riposte/internal/queue/queuetest"
)

// A record larger than the server's max payload can never be stored: the error says so, so the
// engine does not spend its retry budget (and the alert's outcome) on it.
func TestJournalRecordTooLargeIsPermanent(t *testing.T) {
	t.Parallel()
	nc := queuetest.Connect(t, queuetest.StartJetStream(t))
	q, err := queue.New(nc, queue.DefaultConfig(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	j, err := q.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	err = j.Put(context.Background(), "big", make([]byte, nc.MaxPayload()+1))
	var p interface{ Permanent() bool }
	if err == nil || !errors.As(err, &p) || !p.Permanent() {
		t.Fatalf("Put of an oversized record = %v, want a permanent error", err)
	}
	if err := j.Put(context.Background(), "small", []byte(`{}`)); err != nil {
		t.Fatalf("Put of a small record: %v", err)
	}
}
