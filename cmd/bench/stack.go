package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/queue"
)

// stack is what every case runs against: one embedded JetStream server with file storage, the
// fake HEC in a child process, and an admin connection that publishes alerts and checks
// outcomes outside the measured windows.
type stack struct {
	o             *options
	dir           string
	srv           *queue.Embedded
	serverVersion string
	nc            *nats.Conn
	js            jetstream.JetStream
	hec           *hecProcess
	cfg           queue.Config
	stderr        io.Writer
	loadBefore    string
}

func startStack(ctx context.Context, o *options, stderr io.Writer) (*stack, error) {
	dir, err := os.MkdirTemp("", "riposte-bench-")
	if err != nil {
		return nil, err
	}
	st := &stack{o: o, dir: dir, cfg: queue.DefaultConfig(), stderr: stderr, serverVersion: server.VERSION, loadBefore: loadAverage()}
	fail := func(err error) (*stack, error) {
		st.close()
		return nil, err
	}
	st.srv, err = queue.StartEmbedded(queue.EmbeddedConfig{Listen: "127.0.0.1:0", StoreDir: filepath.Join(dir, "jetstream")})
	if err != nil {
		return fail(err)
	}
	if st.nc, err = nats.Connect(st.srv.URL(), nats.Name("riposte-bench-admin")); err != nil {
		return fail(err)
	}
	if st.js, err = jetstream.New(st.nc); err != nil {
		return fail(err)
	}
	if st.hec, err = startHEC(ctx, o.vendorDelay, stderr); err != nil {
		return fail(err)
	}
	return st, nil
}

func (st *stack) close() {
	if st.hec != nil {
		st.hec.stop()
	}
	if st.nc != nil {
		st.nc.Close()
	}
	if st.srv != nil {
		st.srv.Shutdown()
	}
	if st.o.keep {
		fmt.Fprintf(st.stderr, "bench: kept %s\n", st.dir)
		return
	}
	_ = os.RemoveAll(st.dir)
}

// reset gives a case fresh streams, consumer and journal, as a first start of the worker
// would create them, and a fresh fake HEC.
func (st *stack) reset(ctx context.Context) error {
	c := st.cfg
	for _, s := range []string{c.AlertsStream, c.OutcomesStream, c.DLQStream} {
		if err := st.js.DeleteStream(ctx, s); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("delete stream %s: %w", s, err)
		}
	}
	if err := st.js.DeleteKeyValue(ctx, c.JournalBucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("delete bucket %s: %w", c.JournalBucket, err)
	}
	q, err := queue.New(st.nc, c, zap.NewNop())
	if err != nil {
		return err
	}
	if _, err := q.Ensure(ctx); err != nil {
		return err
	}
	return st.hec.reset()
}

// benchSubject is where every case's alerts go; the generated playbooks are on it.
const benchSubject = "soar.alerts.bench.mail"

// alertBody is a mail alert of about 230 bytes, every value its own so that nothing can be
// cached across alerts. matching decides whether the vendor-bound playbook's `when` holds.
func alertBody(id string, matching bool) []byte {
	conf := "suspicious"
	if matching {
		conf = "malicious"
	}
	return []byte(`{"type":"phishing","confidenceIndicator":"` + conf + `","severity":"low","score":12,` +
		`"source":"hec","eventId":"ev-` + id + `","entityId":"` + id + `","sender":"someone@example.com",` +
		`"recipient":"victim@example.org","tags":["mail","inbound"]}`)
}

func alertID(prefix string, i int) string { return prefix + "-" + strconv.Itoa(i) }

// preload publishes n alerts, ids prefix-0 … prefix-(n-1), and waits until the stream holds them.
func (st *stack) preload(ctx context.Context, prefix string, n int, matching bool) error {
	const chunk = 1000
	for i := 0; i < n; {
		for j := 0; j < chunk && i < n; j, i = j+1, i+1 {
			if err := st.publishAlert(alertID(prefix, i), matching); err != nil {
				return err
			}
		}
		select {
		case <-st.js.PublishAsyncComplete():
		case <-time.After(30 * time.Second):
			return errors.New("alerts not stored within 30s")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s, err := st.js.Stream(ctx, st.cfg.AlertsStream)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	if info.State.Msgs != uint64(n) {
		return fmt.Errorf("the alerts stream holds %d alerts, %d published", info.State.Msgs, n)
	}
	return nil
}

func (st *stack) publishAlert(id string, matching bool) error {
	m := nats.NewMsg(benchSubject)
	m.Data = alertBody(id, matching)
	m.Header.Set(nats.MsgIdHdr, id)
	_, err := st.js.PublishMsgAsync(m)
	return err
}

// expectation is what a case's outcomes must be: exactly one per alert id, with this status.
type expectation struct {
	ids    []string
	status string // the outcome's "status"; "" does not look
}

func idsOf(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = alertID(prefix, i)
	}
	return ids
}

// verify checks, outside the measured window, that every alert has exactly one outcome
// (counted by its Riposte-Alert-Id header in the outcomes stream, as a SOC tool would read
// them), that no outcome belongs to another alert, that nothing was dead-lettered, and that the
// consumer has nothing left unacknowledged. withOutcomes false checks only the acks (bare).
func (st *stack) verify(ctx context.Context, want expectation, withOutcomes bool) error {
	c := st.cfg
	deadline := time.Now().Add(10 * time.Second)
	for {
		cons, err := st.js.Consumer(ctx, c.AlertsStream, c.Consumer)
		if err != nil {
			return err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream == uint64(len(want.ids)) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("consumer not done: %d alerts not delivered, %d not acknowledged, ack floor %d of %d",
				info.NumPending, info.NumAckPending, info.AckFloor.Stream, len(want.ids))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n, err := st.streamMsgs(ctx, c.DLQStream); err != nil || n != 0 {
		return fmt.Errorf("dead letters: %d (%v)", n, err)
	}
	if !withOutcomes {
		return nil
	}
	counts, statuses, err := st.readOutcomes(ctx, want.status != "")
	if err != nil {
		return err
	}
	var problems []string
	for _, id := range want.ids {
		if n := counts[id]; n != 1 {
			problems = append(problems, fmt.Sprintf("alert %s has %d outcomes", id, n))
		}
		delete(counts, id)
	}
	for id, n := range counts {
		problems = append(problems, fmt.Sprintf("%d outcomes for %q, which is no alert of this case", n, id))
	}
	for s, n := range statuses {
		if want.status != "" && s != want.status {
			problems = append(problems, fmt.Sprintf("%d outcomes say %q, not %q", n, s, want.status))
		}
	}
	if len(problems) > 0 {
		if len(problems) > 5 {
			problems = append(problems[:5], fmt.Sprintf("and %d more", len(problems)-5))
		}
		return fmt.Errorf("not exactly one outcome per alert: %s", strings.Join(problems, "; "))
	}
	return nil
}

func (st *stack) streamMsgs(ctx context.Context, name string) (uint64, error) {
	s, err := st.js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// readOutcomes reads the whole outcomes stream: outcomes per Riposte-Alert-Id, and per status.
func (st *stack) readOutcomes(ctx context.Context, withStatus bool) (map[string]int, map[string]int, error) {
	total, err := st.streamMsgs(ctx, st.cfg.OutcomesStream)
	if err != nil {
		return nil, nil, err
	}
	s, err := st.js.Stream(ctx, st.cfg.OutcomesStream)
	if err != nil {
		return nil, nil, err
	}
	oc, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, nil, err
	}
	counts, statuses := map[string]int{}, map[string]int{}
	for got := uint64(0); got < total; {
		batch, err := oc.Fetch(int(min(1000, total-got)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, nil, fmt.Errorf("read outcomes: %w", err)
		}
		before := got
		for m := range batch.Messages() {
			got++
			counts[m.Headers().Get(queue.HeaderAlertID)]++
			if withStatus {
				var o struct {
					Status string `json:"status"`
				}
				_ = json.Unmarshal(m.Data(), &o)
				statuses[o.Status]++
			}
		}
		if got == before {
			return nil, nil, fmt.Errorf("read outcomes: %d of %d read, then nothing (%v)", got, total, batch.Error())
		}
	}
	return counts, statuses, nil
}

// usage is what one case cost: wall time, CPU time and peak RSS of the process that ran it,
// the fake HEC's CPU time, and how busy the whole machine was meanwhile.
type usage struct {
	wall   time.Duration
	cpu    time.Duration
	rssKB  int64
	hecCPU time.Duration
	busy   float64 // share of all cores' time busy, whoever used it; 0 when unknown
}

// window measures this process from start to end: CPU from getrusage, peak RSS from VmHWM,
// which start resets (after handing freed memory back) so that each case has its own peak.
// It also takes the case's profiles when asked.
type window struct {
	began       time.Time
	cpu, hecCPU time.Duration
	busy, ticks int64
	hecPID      int
	name        string
	o           *options
	profile     *os.File
}

func (st *stack) startWindow(name string) (*window, error) {
	runtime.GC()
	debug.FreeOSMemory()
	resetPeakRSS()
	w := &window{name: name, o: st.o, hecPID: st.hec.pid()}
	if st.o.cpuProfile != "" {
		f, err := os.Create(profilePath(st.o.cpuProfile, name))
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		w.profile = f
	}
	w.hecCPU = processCPU(w.hecPID)
	w.busy, w.ticks = machineTicks()
	w.began, w.cpu = time.Now(), cpuTime()
	return w, nil
}

func (w *window) end() (usage, error) {
	u := usage{wall: time.Since(w.began), cpu: cpuTime() - w.cpu, rssKB: peakRSSKB(), hecCPU: processCPU(w.hecPID) - w.hecCPU}
	if busy, ticks := machineTicks(); ticks > w.ticks {
		u.busy = float64(busy-w.busy) / float64(ticks-w.ticks)
	}
	if w.profile != nil {
		pprof.StopCPUProfile()
		if err := w.profile.Close(); err != nil {
			return u, err
		}
	}
	if w.o.memProfile != "" {
		f, err := os.Create(profilePath(w.o.memProfile, w.name))
		if err != nil {
			return u, err
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			return u, err
		}
	}
	return u, nil
}

// profilePath puts the case's name before the extension: cpu.pprof → cpu-condition.pprof.
func profilePath(path, name string) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "-" + name + ext
}
