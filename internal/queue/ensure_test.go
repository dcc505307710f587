package queue_test

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/riposte-soar/riposte/internal/queue"
	"github.com/riposte-soar/riposte/internal/queue/queuetest"
)

func TestEnsureCreatesStreamsConsumerAndJournal(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *queue.Config) {
		c.MaxInFlight = 3
		c.DuplicateWindow = 90 * time.Second
		c.JournalTTL = time.Hour
		c.JournalMaxBytes = 8 << 20
	})
	ctx := context.Background()

	if _, err := h.q.Ensure(ctx); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}

	for _, want := range []struct {
		name     string
		subjects []string
	}{
		{"SOAR_ALERTS", []string{"soar.alerts.>"}},
		{"SOAR_OUTCOMES", []string{"soar.outcomes.>"}},
		{"SOAR_DLQ", []string{"soar.dlq.>"}},
	} {
		s, err := h.js.Stream(ctx, want.name)
		if err != nil {
			t.Errorf("stream %s: %v", want.name, err)
			continue
		}
		cfg := s.CachedInfo().Config
		if !slices.Equal(cfg.Subjects, want.subjects) {
			t.Errorf("stream %s subjects = %v, want %v", want.name, cfg.Subjects, want.subjects)
		}
		if cfg.Duplicates != 90*time.Second {
			t.Errorf("stream %s duplicate window = %s, want the configured 1m30s", want.name, cfg.Duplicates)
		}
		if cfg.Storage != jetstream.FileStorage {
			t.Errorf("stream %s storage = %v, want file", want.name, cfg.Storage)
		}
	}

	ci := h.consumerInfo()
	if ci.Config.Durable != "riposte" {
		t.Errorf("consumer durable name = %q, want riposte", ci.Config.Durable)
	}
	if ci.Config.AckPolicy != jetstream.AckExplicitPolicy {
		t.Errorf("consumer ack policy = %v, want explicit", ci.Config.AckPolicy)
	}
	if ci.Config.MaxAckPending != 20000 {
		t.Errorf("consumer max ack pending = %d, want 20000: room for alerts parked behind an outage", ci.Config.MaxAckPending)
	}
	if ci.Config.MaxDeliver != -1 {
		t.Errorf("consumer max deliver = %d, want -1 (the worker counts deliveries)", ci.Config.MaxDeliver)
	}
	if ci.Config.AckWait != 2*time.Second {
		t.Errorf("consumer ack wait = %s, want 2s", ci.Config.AckWait)
	}
	if len(ci.Config.BackOff) != 0 {
		t.Errorf("consumer backoff = %v, want none (it would override AckWait)", ci.Config.BackOff)
	}

	kv, err := h.js.KeyValue(ctx, "riposte_steps")
	if err != nil {
		t.Fatalf("journal bucket: %v", err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != time.Hour {
		t.Errorf("journal TTL = %s, want 1h", st.TTL())
	}
	if kst, ok := st.(*jetstream.KeyValueBucketStatus); !ok || kst.StreamInfo().Config.MaxBytes != 8<<20 || kst.StreamInfo().Config.Replicas != 1 {
		t.Errorf("journal bucket status %T: want max bytes 8 MiB and one replica", st)
	}
}

func TestConfigRejectsImpossibleReplicas(t *testing.T) {
	t.Parallel()
	c := queue.DefaultConfig()
	c.Replicas = 7
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "stream replicas must be from 1 to 5, got 7") {
		t.Errorf("Validate = %v", err)
	}
}

func TestEnsureHonoursNamesAndMaxAckPending(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *queue.Config) {
		c.AlertsStream, c.AlertsSubjects = "A", []string{"in.a.>", "in.b"}
		c.OutcomesStream, c.OutcomesPrefix = "O", "out"
		c.DLQStream, c.DLQPrefix = "D", "dead.letters"
		c.Consumer = "workers"
		c.JournalBucket = "steps"
		c.MaxAckPending = 5
	})
	ctx := context.Background()
	for name, subjects := range map[string][]string{"A": {"in.a.>", "in.b"}, "O": {"out.>"}, "D": {"dead.letters.>"}} {
		s, err := h.js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if got := s.CachedInfo().Config.Subjects; !slices.Equal(got, subjects) {
			t.Errorf("stream %s subjects = %v, want %v", name, got, subjects)
		}
	}
	c, err := h.js.Consumer(ctx, "A", "workers")
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	if got := c.CachedInfo().Config.MaxAckPending; got != 5 {
		t.Errorf("max ack pending = %d, want the configured 5", got)
	}
	if _, err := h.js.KeyValue(ctx, "steps"); err != nil {
		t.Errorf("journal bucket: %v", err)
	}
}

func TestEnsureLeavesExistingStreamsAndConsumerAlone(t *testing.T) {
	t.Parallel()
	nc, js := queuetest.JetStream(t)
	ctx := context.Background()

	// What an operator set up before the first worker started.
	alerts, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "SOAR_ALERTS", Subjects: []string{"soar.alerts.>"}, MaxAge: time.Hour,
		Duplicates: time.Minute, Storage: jetstream.MemoryStorage, MaxMsgs: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	outcomes, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "SOAR_OUTCOMES", Subjects: []string{"soar.outcomes.>"}, MaxAge: 2 * time.Hour, Duplicates: 2 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, "SOAR_ALERTS", jetstream.ConsumerConfig{
		Durable: "riposte", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 45 * time.Second,
		MaxAckPending: 7, MaxDeliver: 10, Description: "the operator's",
	})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "riposte_steps", TTL: time.Minute, History: 3})
	if err != nil {
		t.Fatal(err)
	}
	kvBefore, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}

	q, err := queue.New(nc, testConfig(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := q.Ensure(ctx); err != nil {
			t.Fatalf("Ensure: %v", err)
		}
	}

	for _, s := range []jetstream.Stream{alerts, outcomes} {
		before := s.CachedInfo().Config
		now, err := js.Stream(ctx, before.Name)
		if err != nil {
			t.Fatal(err)
		}
		if after := now.CachedInfo().Config; !reflect.DeepEqual(before, after) {
			t.Errorf("Ensure changed stream %s:\nbefore %+v\nafter  %+v", before.Name, before, after)
		}
	}
	if _, err := js.Stream(ctx, "SOAR_DLQ"); err != nil {
		t.Errorf("the missing dead-letter stream was not created: %v", err)
	}
	now, err := js.Consumer(ctx, "SOAR_ALERTS", "riposte")
	if err != nil {
		t.Fatal(err)
	}
	if before, after := cons.CachedInfo().Config, now.CachedInfo().Config; !reflect.DeepEqual(before, after) {
		t.Errorf("Ensure changed the consumer:\nbefore %+v\nafter  %+v", before, after)
	}
	kvAfter, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if kvAfter.TTL() != kvBefore.TTL() || kvAfter.History() != kvBefore.History() {
		t.Errorf("Ensure changed the journal bucket: TTL %s → %s, history %d → %d",
			kvBefore.TTL(), kvAfter.TTL(), kvBefore.History(), kvAfter.History())
	}
}

func TestJournalRoundTrip(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ctx := context.Background()

	if v, ok, err := h.journal.Get(ctx, "missing"); err != nil || ok || v != nil {
		t.Fatalf("Get(missing) = %q, %v, %v; want nil, false, nil", v, ok, err)
	}
	if err := h.journal.Put(ctx, "k1", []byte(`{"output":{"a":1}}`)); err != nil {
		t.Fatalf("Put: %v", err)
	}
	v, ok, err := h.journal.Get(ctx, "k1")
	if err != nil || !ok || string(v) != `{"output":{"a":1}}` {
		t.Fatalf("Get(k1) = %q, %v, %v; want the stored record", v, ok, err)
	}
	if err := h.journal.Put(ctx, "k1", []byte("second")); err != nil {
		t.Fatalf("Put again: %v", err)
	}
	if v, ok, err := h.journal.Get(ctx, "k1"); err != nil || !ok || string(v) != "second" {
		t.Fatalf("Get(k1) after overwrite = %q, %v, %v; want second", v, ok, err)
	}
	// A second Ensure opens the same bucket.
	j2, err := h.q.Ensure(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok, err := j2.Get(ctx, "k1"); err != nil || !ok || string(v) != "second" {
		t.Fatalf("Get(k1) through a second Ensure = %q, %v, %v; want second", v, ok, err)
	}
}

// A worker that starts while JetStream cannot answer yet (a server still starting JetStream; on
// a cluster, a stream another worker has just created, which has no leader for a moment) waits
// for it: look-ups that meet no responders or time out are tried again until JetStream answers.
func TestEnsureWaitsForJetStreamToAnswer(t *testing.T) {
	t.Parallel()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	requests := func() int64 {
		v, err := srv.Varz(nil)
		if err != nil {
			t.Fatal(err)
		}
		return v.InMsgs
	}

	core, logs := observer.New(zapcore.WarnLevel)
	q, err := queue.New(nc, testConfig(), zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	began := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := q.Ensure(ctx)
		done <- err
	}()
	ensuring := func(what string) {
		t.Helper()
		select {
		case err := <-done:
			t.Fatalf("Ensure returned %s: %v", what, err)
		default:
		}
	}

	// No JetStream: no one answers the look-up.
	eventually(t, "the look-up that met no responders to be sent again", func() bool {
		ensuring("while no one answered")
		return requests() >= 2
	})

	// Then someone takes the look-up and never answers, as for a leaderless stream.
	lookups := make(chan struct{}, 100)
	silent, err := nc.Subscribe("$JS.API.STREAM.INFO.SOAR_ALERTS", func(*nats.Msg) { lookups <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lookups:
	case err := <-done:
		t.Fatalf("Ensure returned before its look-up went unanswered: %v", err)
	case <-ctx.Done():
		t.Fatal("the stream look-up was not tried again")
	}
	if err := silent.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := srv.EnableJetStream(&server.JetStreamConfig{StoreDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	ensuring("while its look-up went unanswered")

	// The unanswered look-up times out, and the next one finds JetStream.
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Ensure once JetStream answered: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Ensure did not finish once JetStream answered")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Stream(context.Background(), "SOAR_ALERTS"); err != nil {
		t.Errorf("alerts stream after Ensure: %v", err)
	}
	warned := logs.FilterMessage("jetstream is not answering yet; trying again").Len()
	if most := 1 + int(time.Since(began)/(5*time.Second)); warned < 1 || warned > most {
		t.Errorf("%d retry warnings in %s; want one every 5 s at most", warned, time.Since(began).Round(time.Millisecond))
	}
}

// A configuration JetStream refuses is the operator's to fix: it fails Ensure at once.
func TestEnsureFailsAtOnceOnARefusal(t *testing.T) {
	t.Parallel()
	nc, js := queuetest.JetStream(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"soar.alerts.>"}}); err != nil {
		t.Fatal(err)
	}
	q, err := queue.New(nc, testConfig(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	_, err = q.Ensure(ctx)
	if err == nil || !strings.Contains(err.Error(), `create stream "SOAR_ALERTS"`) || !strings.Contains(err.Error(), "overlap") {
		t.Fatalf("Ensure = %v, want the overlapping subjects named", err)
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("Ensure took %s to report a refusal; want it at once", took)
	}
}
