package queue_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/queue"
)

func TestLeaseIsExclusiveAndReleased(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	a := h.journal.Leases("worker-a", 600*time.Millisecond, zap.NewNop())
	b := h.journal.Leases("worker-b", 600*time.Millisecond, zap.NewNop())
	ctx := context.Background()
	held, release, wait, err := a.Lock(ctx, "step x")
	if err != nil || held == nil || wait != 0 {
		t.Fatalf("first lock: %v %v %v", held, wait, err)
	}
	// Renewed past its length while a holds it: b keeps being told to wait.
	time.Sleep(time.Second)
	if held.Err() != nil {
		t.Fatal("a lost a lease it was renewing")
	}
	if _, _, wait, err := b.Lock(ctx, "step x"); err != nil || wait <= 0 {
		t.Fatalf("b locked a live lease: wait %v, %v", wait, err)
	}
	if _, relB, wait, err := b.Lock(ctx, "step y"); err != nil || wait != 0 {
		t.Fatalf("another name: wait %v, %v", wait, err)
	} else {
		relB()
	}
	release()
	if held.Err() == nil {
		t.Error("a's work context still live after release")
	}
	heldB, releaseB, wait, err := b.Lock(ctx, "step x")
	if err != nil || heldB == nil || wait != 0 {
		t.Fatalf("b after a released: %v %v", wait, err)
	}
	releaseB()
}

// A holder cut off from NATS stops renewing: once its lease lapses another replica takes it,
// and the cut-off holder's work context ends, so it stops at the next step boundary.
func TestLapsedLeaseIsTakenOverAndItsHolderStopped(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	cut, err := nats.Connect(h.nc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	qa, err := queue.New(cut, h.cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ja, err := qa.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 600 * time.Millisecond
	a := ja.Leases("worker-a", ttl, zap.NewNop())
	b := h.journal.Leases("worker-b", ttl, zap.NewNop())
	held, release, _, err := a.Lock(context.Background(), "step x")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	cut.Close() // a is cut off: it cannot renew
	select {
	case <-held.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the cut-off holder's work went on after its lease lapsed")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		heldB, releaseB, wait, err := b.Lock(context.Background(), "step x")
		if err != nil {
			t.Fatal(err)
		}
		if heldB != nil {
			releaseB()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lapsed lease was never taken over (wait %v)", wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
