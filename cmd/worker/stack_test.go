package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/actions/checkpoint"
	"github.com/riposte-soar/riposte/internal/queue"
	"github.com/riposte-soar/riposte/internal/queue/queuetest"
	"github.com/riposte-soar/riposte/internal/testkit"
)

// stack is one worker wired exactly as `worker run` wires it, against a real embedded JetStream
// server and the strict fake HEC.
type stack struct {
	t       *testing.T
	nc      *nats.Conn
	js      jetstream.JetStream
	hec     *checkpoint.Fake
	vendors *fakeVendors
	cfg     queue.Config
	// httpURL is the worker's health and metrics server, when a tweak set httpAddr.
	httpURL string
}

// startStack starts a worker on the playbooks in dir; tweak may adjust the settings first.
func startStack(t *testing.T, dir string, tweak func(*settings)) *stack {
	t.Helper()
	return startStackLogged(t, dir, tweak, zap.NewNop())
}

// startStackLogged is startStack with the worker logging to log.
func startStackLogged(t *testing.T, dir string, tweak func(*settings), log *zap.Logger) *stack {
	t.Helper()
	emb := queuetest.StartJetStream(t)
	fakes := startFakeVendors(t)
	hec := fakes.hec
	env := fakes.with(map[string]string{"RIPOSTE_PLAYBOOKS": dir, "RIPOSTE_HTTP_ADDR": "", "RIPOSTE_RETRY_DELAY": "20ms"})
	s := testSettings(t, env)
	// An empty variable counts as unset, so the default :9464 came back: off unless a tweak asks.
	s.httpAddr = ""
	if tweak != nil {
		tweak(&s)
	}
	reg, m := newMetrics()
	if s.httpAddr == "" {
		m = nil // as the demo runs: no metrics at all
	}
	w, err := newWorker(&s, log, m)
	if err != nil {
		t.Fatalf("new worker: %v", err)
	}
	nc := queuetest.Connect(t, emb)
	httpURL := ""
	if s.httpAddr != "" { // as `worker run` does
		bound, stop, err := serveHTTP(s.httpAddr, w.ready, w.reload, reg, zap.NewNop(), w.httpExtras())
		if err != nil {
			t.Fatalf("serve http: %v", err)
		}
		t.Cleanup(stop)
		httpURL = "http://" + bound
		if s.console.tls != nil {
			httpURL = "https://" + bound
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.run(ctx, nc) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker run: %v", err)
		}
	})
	js := mustJetStream(t, nc)
	st := &stack{t: t, nc: nc, js: js, hec: hec, vendors: fakes, cfg: s.queue, httpURL: httpURL}
	st.eventually("the worker ready", func() bool { return w.ready() == nil })
	return st
}

// testSettings parses the worker's flags with only env set, as `worker run` would.
func testSettings(t *testing.T, vars map[string]string) settings {
	t.Helper()
	env := mapEnv(vars)
	var s settings
	f := newEnvFlags("test", env)
	defineCommon(f, &s)
	defineWorker(f, &s)
	if err := f.fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if len(f.errs) > 0 {
		t.Fatal(errors.Join(f.errs...))
	}
	if err := s.finish(env); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *stack) publish(subject, msgID string, body string, headers map[string]string) *jetstream.PubAck {
	s.t.Helper()
	m := nats.NewMsg(subject)
	m.Data = []byte(body)
	if msgID != "" {
		m.Header.Set(nats.MsgIdHdr, msgID)
	}
	for k, v := range headers {
		m.Header.Set(k, v)
	}
	ack, err := s.js.PublishMsg(context.Background(), m)
	if err != nil {
		s.t.Fatalf("publish to %s: %v", subject, err)
	}
	return ack
}

// await returns the last message stored on subject, waiting for it to appear.
func (s *stack) await(stream, subject string) *jetstream.RawStreamMsg {
	s.t.Helper()
	var got *jetstream.RawStreamMsg
	s.eventually("a message on "+subject, func() bool {
		str, err := s.js.Stream(context.Background(), stream)
		if err != nil {
			return false
		}
		got, err = str.GetLastMsgForSubject(context.Background(), subject)
		return err == nil
	})
	return got
}

// count is how many messages the stream holds on subject.
func (s *stack) count(stream, subject string) uint64 {
	s.t.Helper()
	str, err := s.js.Stream(context.Background(), stream)
	if err != nil {
		s.t.Fatal(err)
	}
	info, err := str.Info(context.Background(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		s.t.Fatal(err)
	}
	return info.State.Subjects[subject]
}

// deadLetters is how many dead letters the stream holds.
func (s *stack) deadLetters() uint64 {
	s.t.Helper()
	str, err := s.js.Stream(context.Background(), s.cfg.DLQStream)
	if err != nil {
		s.t.Fatal(err)
	}
	info, err := str.Info(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	return info.State.Msgs
}

// settled waits until the consumer has nothing pending or unacknowledged: every alert was acked
// or terminated.
func (s *stack) settled() {
	s.t.Helper()
	s.eventually("every alert acked", func() bool {
		c, err := s.js.Consumer(context.Background(), s.cfg.AlertsStream, s.cfg.Consumer)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0
	})
}

func (s *stack) eventually(what string, cond func() bool) {
	s.t.Helper()
	s.eventuallyWithin(20*time.Second, what, cond)
}

func (s *stack) eventuallyWithin(wait time.Duration, what string, cond func() bool) {
	s.t.Helper()
	testkit.Eventually(s.t, wait, what, cond)
}

// outcomeOf decodes a stored outcome.
func outcomeOf(t *testing.T, m *jetstream.RawStreamMsg) map[string]any {
	t.Helper()
	var o map[string]any
	dec := json.NewDecoder(strings.NewReader(string(m.Data)))
	dec.UseNumber()
	if err := dec.Decode(&o); err != nil {
		t.Fatalf("outcome on %s is not JSON: %v\n%s", m.Subject, err, m.Data)
	}
	return o
}

// entityRequests are the fake HEC's recorded POST /action/entity bodies.
func entityRequests(t *testing.T, hec *checkpoint.Fake) []map[string]any {
	t.Helper()
	var bodies []map[string]any
	for _, r := range hec.Requests() {
		if r.Method == "POST" && strings.HasSuffix(r.Path, "/action/entity") {
			var b map[string]any
			if err := json.Unmarshal(r.Body, &b); err != nil {
				t.Fatalf("recorded body: %v", err)
			}
			bodies = append(bodies, b)
		}
	}
	return bodies
}

func mustJetStream(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// connectURL connects to a server this test did not start in-process.
func connectURL(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// all returns every message stored on subject, oldest first.
func (s *stack) all(stream, subject string) []jetstream.Msg {
	s.t.Helper()
	ctx := context.Background()
	c, err := s.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		s.t.Fatal(err)
	}
	n := s.count(stream, subject)
	var msgs []jetstream.Msg
	for uint64(len(msgs)) < n {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			s.t.Fatalf("read %s: %v", subject, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}
