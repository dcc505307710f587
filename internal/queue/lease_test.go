package queue_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
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

// A step's claim and its record share one key: a claim where there is no record, a wait while
// another delivery holds it, the record in its place once the step succeeded (readable as the
// journal's), and a claim again after a release without one.
func TestStepClaimIsReplacedByItsRecord(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	a := h.journal.Leases("worker-a", 600*time.Millisecond, zap.NewNop())
	b := h.journal.Leases("worker-b", 600*time.Millisecond, zap.NewNop())
	ctx := context.Background()
	var seen []string
	usable := func(v []byte) bool { seen = append(seen, string(v)); return strings.HasPrefix(string(v), `{"output"`) }

	held, record, release, recorded, wait, err := a.ClaimStep(ctx, "k1", usable)
	if err != nil || held == nil || recorded || wait != 0 {
		t.Fatalf("first claim: held %v, recorded %v, wait %v, %v", held, recorded, wait, err)
	}
	time.Sleep(time.Second) // renewed past its length
	if _, _, _, recorded, wait, err := b.ClaimStep(ctx, "k1", usable); err != nil || recorded || wait <= 0 {
		t.Fatalf("b claimed a live claim: recorded %v, wait %v, %v", recorded, wait, err)
	}
	const rec = `{"output":{"x":1},"attempts":1,"duration_ms":3}`
	if err := record(ctx, []byte(rec)); err != nil {
		t.Fatal(err)
	}
	release() // after the record: nothing to delete
	if held.Err() == nil {
		t.Error("the claim's work context still live after release")
	}
	if got, ok, err := h.journal.Get(ctx, "k1"); err != nil || !ok || string(got) != rec {
		t.Fatalf("journal Get = %q, %v, %v; want the record", got, ok, err)
	}
	if _, _, _, recorded, wait, err := b.ClaimStep(ctx, "k1", usable); err != nil || !recorded || wait != 0 {
		t.Fatalf("claim over the record: recorded %v, wait %v, %v; want recorded", recorded, wait, err)
	}
	if len(seen) != 1 || seen[0] != rec {
		t.Errorf("usable saw %q, want the record once", seen)
	}
	if err := record(ctx, []byte(rec)); err == nil {
		t.Error("a second record through an ended claim was taken")
	}

	// Released without a record: the next delivery claims it.
	_, _, release2, _, _, err := a.ClaimStep(ctx, "k2", usable)
	if err != nil {
		t.Fatal(err)
	}
	release2()
	if held, _, release, recorded, wait, err := b.ClaimStep(ctx, "k2", usable); err != nil || held == nil || recorded || wait != 0 {
		t.Fatalf("after a release: held %v, recorded %v, wait %v, %v", held, recorded, wait, err)
	} else {
		release()
	}

	// A record that does not read (usable refuses it) is claimed over.
	if err := h.journal.Put(ctx, "k3", []byte(`{"outp`)); err != nil {
		t.Fatal(err)
	}
	if held, _, release, recorded, wait, err := b.ClaimStep(ctx, "k3", usable); err != nil || held == nil || recorded || wait != 0 {
		t.Fatalf("over an unusable record: held %v, recorded %v, wait %v, %v", held, recorded, wait, err)
	} else {
		release()
	}
	if _, ok, _ := h.journal.Get(ctx, "k3"); ok {
		t.Error("the claim over the unusable record was not released")
	}

	// Too large for the server: a permanent error, and the claim is still released.
	_, record4, release4, _, _, err := a.ClaimStep(ctx, "k4", usable)
	if err != nil {
		t.Fatal(err)
	}
	err = record4(ctx, make([]byte, h.nc.MaxPayload()+1))
	var p interface{ Permanent() bool }
	if err == nil || !errors.As(err, &p) || !p.Permanent() {
		t.Errorf("an oversized record = %v, want a permanent error", err)
	}
	release4()
	if held, _, release, _, wait, err := b.ClaimStep(ctx, "k4", usable); err != nil || held == nil || wait != 0 {
		t.Fatalf("after the oversized record: held %v, wait %v, %v", held, wait, err)
	} else {
		release()
	}
}

// A claim another replica took over meanwhile (here written straight into the bucket) ends
// the holder's work at its next renewal; the holder's record, once the vendor has acted, is
// written over the other's claim all the same.
func TestTakenStepClaimEndsItsWorkAndTheRecordStillLands(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	a := h.journal.Leases("worker-a", 600*time.Millisecond, zap.NewNop())
	ctx := context.Background()
	held, record, release, _, _, err := a.ClaimStep(ctx, "k", func([]byte) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := h.journal.Put(ctx, "k", []byte(`{"owner":"worker-b","until":`+strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)+`}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the holder's work went on after another replica took its claim")
	}
	const rec = `{"output":{"by":"a"}}`
	if err := record(ctx, []byte(rec)); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := h.journal.Get(ctx, "k"); err != nil || !ok || string(got) != rec {
		t.Fatalf("journal Get = %q, %v, %v; want a's record", got, ok, err)
	}
}

// A step's claim, where its journal record will be, is no record to a reader of records: its
// "output" is not an object, so a worker of a version before step claims held records runs the
// step rather than take the claim for a step done.
func TestStepClaimIsNoStepRecord(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ctx := context.Background()
	_, _, release, _, _, err := h.journal.Leases("worker-a", time.Minute, zap.NewNop()).ClaimStep(ctx, "k", func([]byte) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	b, ok, err := h.journal.Get(ctx, "k")
	if err != nil || !ok {
		t.Fatalf("the claim is not under the record's key: %v", err)
	}
	var rec struct {
		Output map[string]any `json:"output"`
	}
	if err := json.Unmarshal(b, &rec); err == nil {
		t.Errorf("the claim %s reads as a step record", b)
	}
}
