package queue_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/queue"
	"github.com/riposte-soar/riposte/internal/queue/queuetest"
	"github.com/riposte-soar/riposte/internal/testkit"
)

// waitFor bounds every wait in these tests: reaching it means something never happened.
const waitFor = 20 * time.Second

// testConfig is the defaults with delays small enough for tests.
func testConfig() queue.Config {
	c := queue.DefaultConfig()
	c.MaxInFlight = 4
	c.MaxAckPending = 0 // the default: MaxInFlight × 16
	c.AckWait = 2 * time.Second
	c.MaxDeliver = 3
	c.MaxDeliveries = 6
	c.RetryDelay = 20 * time.Millisecond
	c.MaxRetryDelay = 100 * time.Millisecond
	c.GracePeriod = 300 * time.Millisecond
	return c
}

// harness is one embedded JetStream server with a Queue on it, already Ensure'd.
type harness struct {
	t       *testing.T
	nc      *nats.Conn
	js      jetstream.JetStream
	q       *queue.Queue
	cfg     queue.Config // effective, defaults filled in
	journal *queue.Journal
}

func newHarness(t *testing.T, adjust func(*queue.Config)) *harness {
	t.Helper()
	cfg := testConfig()
	if adjust != nil {
		adjust(&cfg)
	}
	nc, js := queuetest.JetStream(t)
	q, err := queue.New(nc, cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	j, err := q.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, nc: nc, js: js, q: q, cfg: q.Config(), journal: j}
}

// running is one Queue.Run in its own goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// run starts q.Run(h); the test's cleanup stops it and waits for it.
func (h *harness) run(q *queue.Queue, handler queue.Handler) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = q.Run(ctx, handler)
	}()
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(waitFor):
			h.t.Errorf("Run did not return %s after its context was cancelled", waitFor)
		}
	})
	return r
}

// stop cancels Run's context and waits for Run to return.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(waitFor):
		t.Fatalf("Run did not return %s after its context was cancelled", waitFor)
		return nil
	}
}

// publish stores one alert and returns its PubAck.
func (h *harness) publish(subject string, data []byte, hdr nats.Header) *jetstream.PubAck {
	h.t.Helper()
	m := nats.NewMsg(subject)
	m.Data = data
	for k, vs := range hdr {
		for _, v := range vs {
			m.Header.Add(k, v)
		}
	}
	ack, err := h.js.PublishMsg(context.Background(), m)
	if err != nil {
		h.t.Fatalf("publish alert to %s: %v", subject, err)
	}
	return ack
}

// messages returns every message the stream holds, in order.
func (h *harness) messages(stream string) []*jetstream.RawStreamMsg {
	h.t.Helper()
	ctx := context.Background()
	s, err := h.js.Stream(ctx, stream)
	if err != nil {
		h.t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		h.t.Fatalf("stream %s info: %v", stream, err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			h.t.Fatalf("stream %s message %d: %v", stream, seq, err)
		}
		out = append(out, m)
	}
	return out
}

// waitMessages waits until the stream holds at least n messages on subject, and returns them.
func (h *harness) waitMessages(stream, subject string, n int) []*jetstream.RawStreamMsg {
	h.t.Helper()
	var got []*jetstream.RawStreamMsg
	eventually(h.t, fmt.Sprintf("%d message(s) on %s", n, subject), func() bool {
		got = got[:0]
		for _, m := range h.messages(stream) {
			if m.Subject == subject {
				got = append(got, m)
			}
		}
		return len(got) >= n
	})
	return got
}

func (h *harness) consumerInfo() *jetstream.ConsumerInfo {
	h.t.Helper()
	c, err := h.js.Consumer(context.Background(), h.cfg.AlertsStream, h.cfg.Consumer)
	if err != nil {
		h.t.Fatalf("consumer: %v", err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		h.t.Fatalf("consumer info: %v", err)
	}
	return info
}

// waitSettled waits until the consumer has delivered everything and holds nothing unacked.
func (h *harness) waitSettled() *jetstream.ConsumerInfo {
	h.t.Helper()
	var info *jetstream.ConsumerInfo
	eventually(h.t, "consumer with nothing pending and nothing unacked", func() bool {
		info = h.consumerInfo()
		return info.NumPending == 0 && info.NumAckPending == 0
	})
	return info
}

// outcomesTakenNotStored deletes the outcomes stream and has someone take every outcome published
// and never acknowledge it, as a stream without a leader does; the channel hears each one.
// Ensure brings the stream back.
func (h *harness) outcomesTakenNotStored() <-chan struct{} {
	h.t.Helper()
	if err := h.js.DeleteStream(context.Background(), h.cfg.OutcomesStream); err != nil {
		h.t.Fatal(err)
	}
	taken := make(chan struct{}, 10)
	sub, err := h.nc.Subscribe(h.cfg.OutcomesPrefix+".>", func(*nats.Msg) { taken <- struct{}{} })
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := h.nc.Flush(); err != nil {
		h.t.Fatal(err)
	}
	return taken
}

// eventually polls cond until it holds, failing the test after waitFor.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, waitFor, what, cond)
}

// recorder is a scripted handler that remembers every alert it was given.
type recorder struct {
	mu      sync.Mutex
	alerts  []*queue.Alert
	fn      func(ctx context.Context, a *queue.Alert, call int) queue.Verdict
	seen    chan *queue.Alert // every alert, as it arrives; buffered
	started time.Time
}

func newRecorder(fn func(ctx context.Context, a *queue.Alert, call int) queue.Verdict) *recorder {
	return &recorder{fn: fn, seen: make(chan *queue.Alert, 100), started: time.Now()}
}

func (r *recorder) handle(ctx context.Context, a *queue.Alert) queue.Verdict {
	r.mu.Lock()
	r.alerts = append(r.alerts, a)
	n := len(r.alerts)
	r.mu.Unlock()
	select {
	case r.seen <- a:
	default:
	}
	if r.fn == nil {
		return queue.Verdict{}
	}
	return r.fn(ctx, a, n)
}

func (r *recorder) calls() []*queue.Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*queue.Alert(nil), r.alerts...)
}

// next waits for the next alert the handler is given.
func (r *recorder) next(t *testing.T) *queue.Alert {
	t.Helper()
	select {
	case a := <-r.seen:
		return a
	case <-time.After(waitFor):
		t.Fatalf("handler not called within %s", waitFor)
		return nil
	}
}

func hdr(kv ...string) nats.Header {
	h := nats.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}
