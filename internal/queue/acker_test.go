package queue

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// replyOnly is a delivery whose ack subject is one the test answers itself.
type replyOnly struct {
	jetstream.Msg
	reply string
}

func (m replyOnly) Reply() string { return m.reply }

// An ack whose confirmation does not come (lost in a leader change) is sent again, and the
// acker's close waits until it is confirmed.
func TestUnconfirmedAckIsSentAgain(t *testing.T) {
	t.Parallel()
	nc := connectEmbedded(t)

	// The "server" takes the first ack and says nothing, as a consumer leader that died does;
	// it confirms the second.
	acks := make(chan *nats.Msg, 10)
	sub, err := nc.Subscribe("test.ack.1", func(m *nats.Msg) { acks <- m })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	a, err := newAcker(nc)
	if err != nil {
		t.Fatal(err)
	}
	a.ack(&delivery{msg: replyOnly{reply: "test.ack.1"}, alert: &Alert{ID: "a-1"}, base: zap.NewNop()})

	var first *nats.Msg
	select {
	case first = <-acks:
	case <-time.After(waitForAck):
		t.Fatal("no ack sent")
	}
	if string(first.Data) != "+ACK" || first.Reply == "" {
		t.Fatalf("ack %q with reply %q, want +ACK asking for a confirmation", first.Data, first.Reply)
	}
	select {
	case again := <-acks:
		if again.Reply != first.Reply {
			t.Errorf("sent again with reply %q, want %q", again.Reply, first.Reply)
		}
		if err := again.Respond(nil); err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitForAck):
		t.Fatal("an unconfirmed ack was not sent again")
	}

	closed := make(chan struct{})
	go func() { a.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(waitForAck):
		t.Fatal("close did not return once the ack was confirmed")
	}
	a.mu.Lock()
	left := len(a.pending)
	a.mu.Unlock()
	if left != 0 {
		t.Errorf("%d acks still pending after close", left)
	}
}

// connectEmbedded is queuetest's StartJetStream and Connect, which this package's own tests
// cannot import (queuetest imports queue).
func connectEmbedded(t *testing.T) *nats.Conn {
	t.Helper()
	e, err := StartEmbedded(EmbeddedConfig{Listen: "127.0.0.1:0", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	nc, err := nats.Connect(e.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// waitForAck bounds every wait above: reaching it means something never happened.
const waitForAck = 20 * time.Second

// An ack no one took (the consumer had no leader that moment) is answered by the server with
// "no responders": that is not a confirmation, and the ack is sent again.
func TestAckWithoutRespondersIsNotConfirmed(t *testing.T) {
	t.Parallel()
	nc := connectEmbedded(t)
	a, err := newAcker(nc)
	if err != nil {
		t.Fatal(err)
	}
	a.ack(&delivery{msg: replyOnly{reply: "test.nobody"}, alert: &Alert{ID: "a-2"}, base: zap.NewNop()})
	tries := func() (int, bool) {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, p := range a.pending {
			return p.tries, true
		}
		return 0, false
	}
	deadline := time.Now().Add(waitForAck)
	for {
		n, pending := tries()
		if !pending {
			t.Fatalf("the ack was taken for confirmed after %d tries, with no one to take it", n)
		}
		if n >= 2 {
			break // sent again, still waiting for a confirmation
		}
		if time.Now().After(deadline) {
			t.Fatal("an ack without responders was not sent again")
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.close() // gives up after its tries
}
