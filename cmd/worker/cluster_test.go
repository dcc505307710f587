package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/riposte-soar/riposte/internal/queue"
)

// The cluster test runs real nats-server processes, built from the module go.mod names, so that
// one can be killed with SIGKILL and started again on the same store, as a crashed server is.

var (
	natsBuildOnce sync.Once
	natsBinPath   string
	natsBuildErr  error
)

// natsServerBinary builds nats-server once per test binary. It goes beside the worker binary,
// whose directory TestMain removes.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	dir := filepath.Dir(workerBinary(t)) // skips under -short
	natsBuildOnce.Do(func() {
		natsBinPath = filepath.Join(dir, "nats-server")
		out, err := exec.Command("go", "build", "-o", natsBinPath, "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err != nil {
			natsBuildErr = fmt.Errorf("go build nats-server: %v\n%s", err, out)
		}
	})
	if natsBuildErr != nil {
		t.Fatal(natsBuildErr)
	}
	return natsBinPath
}

// clusterNode is one nats-server process of a test cluster.
type clusterNode struct {
	name, url, conf string
	cmd             *exec.Cmd
	log             *lockedBuffer
	done            chan error
}

// startCluster writes a configuration for each of n servers on loopback (client port, route
// port, store directory of its own, routes to the others) and starts them.
func startCluster(t *testing.T, n int) []*clusterNode {
	t.Helper()
	bin := natsServerBinary(t)
	dir := t.TempDir()
	clients, routes := make([]string, n), make([]string, n)
	for i := range n {
		clients[i], routes[i] = freeAddr(t), freeAddr(t)
	}
	nodes := make([]*clusterNode, n)
	for i := range n {
		var others []string
		for j := range n {
			if j != i {
				others = append(others, "nats-route://"+routes[j])
			}
		}
		name := fmt.Sprintf("n%d", i+1)
		conf := fmt.Sprintf(`server_name: %s
listen: %q
jetstream {
  store_dir: %q
  max_memory_store: 64MB
  max_file_store: 1GB
}
cluster {
  name: riposte-test
  listen: %q
  routes: [%s]
}
`, name, clients[i], filepath.Join(dir, name, "store"), routes[i], strings.Join(others, ", "))
		path := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		nodes[i] = &clusterNode{name: name, url: "nats://" + clients[i], conf: path}
	}
	for _, nd := range nodes {
		nd.start(t, bin)
	}
	return nodes
}

func (nd *clusterNode) start(t *testing.T, bin string) {
	t.Helper()
	cmd := exec.Command(bin, "-c", nd.conf)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	nd.log = &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = nd.log, nd.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", nd.name, err)
	}
	nd.cmd, nd.done = cmd, make(chan error, 1)
	done := nd.done
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		err := <-done
		done <- err
	})
}

// kill ends the server with SIGKILL, as a crash or a lost machine does, and waits for it.
func (nd *clusterNode) kill(t *testing.T) {
	t.Helper()
	if err := nd.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill %s: %v", nd.name, err)
	}
	err := <-nd.done
	nd.done <- err
}

func (nd *clusterNode) exited() bool {
	select {
	case err := <-nd.done:
		nd.done <- err
		return true
	default:
		return false
	}
}

func clusterURLs(nodes []*clusterNode) string {
	urls := make([]string, len(nodes))
	for i, nd := range nodes {
		urls[i] = nd.url
	}
	return strings.Join(urls, ",")
}

// connectCluster connects to first, failing over to the other servers; it returns at once,
// connecting in the background while the servers are not up yet.
func connectCluster(t *testing.T, nodes []*clusterNode, first int) *nats.Conn {
	t.Helper()
	urls := []string{nodes[first].url}
	for i, nd := range nodes {
		if i != first {
			urls = append(urls, nd.url)
		}
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.DontRandomize(), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true), nats.Name(t.Name()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func clusterTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// clusterGroups are the raft groups a worker depends on: the three streams, the journal
// bucket's stream and the shared consumer.
type clusterGroups struct {
	js  jetstream.JetStream
	nc  *nats.Conn
	cfg queue.Config
}

const consumerGroup = "consumer"

func (g clusterGroups) names() []string {
	return []string{g.cfg.AlertsStream, g.cfg.OutcomesStream, g.cfg.DLQStream, "KV_" + g.cfg.JournalBucket, consumerGroup}
}

// info returns a group's configured replicas and cluster state.
func (g clusterGroups) info(name string) (replicas int, cl *jetstream.ClusterInfo, err error) {
	return g.infoWithin(name, time.Second)
}

func (g clusterGroups) infoWithin(name string, wait time.Duration) (replicas int, cl *jetstream.ClusterInfo, err error) {
	ctx, cancel := clusterTimeout(wait)
	defer cancel()
	if name == consumerGroup {
		c, err := g.js.Consumer(ctx, g.cfg.AlertsStream, g.cfg.Consumer)
		if err != nil {
			return 0, nil, err
		}
		return c.CachedInfo().Config.Replicas, c.CachedInfo().Cluster, nil
	}
	s, err := g.js.Stream(ctx, name)
	if err != nil {
		return 0, nil, err
	}
	return s.CachedInfo().Config.Replicas, s.CachedInfo().Cluster, nil
}

func (g clusterGroups) leader(name string) string { return g.leaderWithin(name, time.Second) }

// leaderWithin is the group's leader, or "" when it has none or does not answer within wait.
func (g clusterGroups) leaderWithin(name string, wait time.Duration) string {
	_, cl, err := g.infoWithin(name, wait)
	if err != nil || cl == nil {
		return ""
	}
	return cl.Leader
}

// whole says the group has a leader and two current followers.
func (g clusterGroups) whole(name string) bool {
	_, cl, err := g.info(name)
	if err != nil || cl == nil || cl.Leader == "" || len(cl.Replicas) != 2 {
		return false
	}
	for _, p := range cl.Replicas {
		if !p.Current || p.Offline {
			return false
		}
	}
	return true
}

// moveLeader asks the group's leader to step down in favour of server to, and waits for it.
func (g clusterGroups) moveLeader(t *testing.T, name, to string) {
	t.Helper()
	subject := "$JS.API.STREAM.LEADER.STEPDOWN." + name
	if name == consumerGroup {
		subject = "$JS.API.CONSUMER.LEADER.STEPDOWN." + g.cfg.AlertsStream + "." + g.cfg.Consumer
	}
	deadline := time.Now().Add(20 * time.Second)
	for g.leader(name) != to {
		if time.Now().After(deadline) {
			t.Fatalf("%s: leader is still %q, not %s", name, g.leader(name), to)
		}
		resp, err := g.nc.Request(subject, []byte(`{"placement":{"preferred":"`+to+`"}}`), 2*time.Second)
		if err == nil {
			var r struct {
				Error *struct {
					Description string `json:"description"`
				} `json:"error"`
			}
			if json.Unmarshal(resp.Data, &r) == nil && r.Error != nil {
				t.Logf("%s: step down: %s", name, r.Error.Description)
			}
		}
		for end := time.Now().Add(2 * time.Second); g.leader(name) != to && time.Now().Before(end); {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// clusterStreamMsgs reads every message a stream holds on subject, by sequence.
func clusterStreamMsgs(js jetstream.JetStream, stream, subject string) ([]*jetstream.RawStreamMsg, error) {
	ctx, cancel := clusterTimeout(10 * time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	var msgs []*jetstream.RawStreamMsg
	state := s.CachedInfo().State
	for seq := state.FirstSeq; seq > 0 && seq <= state.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m.Subject == subject {
			msgs = append(msgs, m)
		}
	}
	return msgs, nil
}

// clusterStreamCount is how many messages stream holds on subject ("" for all).
func clusterStreamCount(js jetstream.JetStream, stream, subject string) (uint64, error) {
	ctx, cancel := clusterTimeout(2 * time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	if subject == "" {
		return s.CachedInfo().State.Msgs, nil
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, err
	}
	return info.State.Subjects[subject], nil
}

// publishStored publishes one alert until JetStream has stored it, with the same Nats-Msg-Id
// each time, so that a publish whose PubAck was lost in a leader change is stored once.
func publishStored(js jetstream.JetStream, id string, limit time.Duration) (tries int, err error) {
	deadline := time.Now().Add(limit)
	for {
		tries++
		m := nats.NewMsg("soar.alerts.checkpoint.phishing")
		m.Data = []byte(phishing(id, "ev-1", "ent-"+id))
		m.Header.Set(nats.MsgIdHdr, id)
		ctx, cancel := clusterTimeout(time.Second)
		_, err = js.PublishMsg(ctx, m)
		cancel()
		if err == nil || time.Now().After(deadline) {
			return tries, err
		}
		time.Sleep(25 * time.Millisecond) // a pause between tries, not a synchronisation
	}
}

// alertTimes is one alert's life as the producer saw it.
type alertTimes struct {
	first, stored time.Time // the first publish attempt; the PubAck
	tries         int
	err           error
}

// clusterUntil polls cond every 20 ms until it holds, failing the test after wait.
func clusterUntil(t *testing.T, wait time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", wait, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clusterReady waits until a replicated stream can be placed: a meta leader, and all three
// servers in its group.
func clusterReady(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	clusterUntil(t, 30*time.Second, "the cluster to form", func() bool {
		ctx, cancel := clusterTimeout(2 * time.Second)
		defer cancel()
		if _, err := js.AccountInfo(ctx); err != nil {
			return false
		}
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PROBE", Subjects: []string{"probe.>"}, Replicas: 3, Storage: jetstream.MemoryStorage}); err != nil {
			return false
		}
		return js.DeleteStream(ctx, "PROBE") == nil
	})
}

// Three nats-server processes in one cluster on loopback, the streams and the journal bucket
// at three replicas, two workers. The leader of the alerts stream, made leader of every other
// group the workers use too (the worst one server's death can do), is killed with SIGKILL
// while alerts arrive and some are mid-run, and later restarted on its store. Nothing is lost,
// no alert has two outcomes, nothing is dead-lettered, both workers carry on, and once the
// cluster has its leaders back every outcome follows within 5 s.
func TestClusterStreamLeaderKilledLosesNothing(t *testing.T) {
	t.Parallel()
	began := time.Now()
	nodes := startCluster(t, 3)
	bin := natsServerBinary(t)
	admin := connectCluster(t, nodes, 0)
	js := mustJetStream(t, admin)
	clusterReady(t, js)
	formed := time.Now()

	// The quarantine takes 300 ms at the vendor, so that alerts are mid-run when the server dies.
	fakes := startFakeVendors(t)
	slowHEC := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/action/entity") {
			select {
			case <-time.After(300 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		fakes.hec.ServeHTTP(w, r)
	}))
	t.Cleanup(slowHEC.Close)
	env := fakes.environ(map[string]string{
		"NATS_URL": clusterURLs(nodes), "RIPOSTE_STREAM_REPLICAS": "3", "HEC_BASE_URL": slowHEC.URL,
		"RIPOSTE_PLAYBOOKS": shippedPlaybooks, "RIPOSTE_HTTP_ADDR": "",
		"RIPOSTE_ACK_WAIT": "5s", "RIPOSTE_RETRY_DELAY": "200ms",
	})
	// One worker creates the streams, the consumer and the bucket; the second starts once they
	// have leaders. Started together, the second's look-up of a stream the first has just
	// created can go unanswered (nats-server answers for a new replicated stream only once it
	// has a leader, or after 10 s) and that worker exits with "look up stream: context deadline
	// exceeded" instead of trying again.
	cfg := queue.DefaultConfig()
	groups := clusterGroups{js: js, nc: admin, cfg: cfg}
	workers := []*proc{startProcess(t, env, "run")}
	workers[0].waitLog(t, `"msg":"worker ready"`)
	for _, name := range groups.names() {
		clusterUntil(t, 20*time.Second, name+" with a leader and two current followers", func() bool { return groups.whole(name) })
		if r, _, err := groups.info(name); err != nil || r != 3 && !(name == consumerGroup && r == 0) { // a consumer's 0 is its stream's
			t.Fatalf("%s has %d replicas (%v), want 3 (RIPOSTE_STREAM_REPLICAS)", name, r, err)
		}
	}
	workers = append(workers, startProcess(t, env, "run"))
	workers[1].waitLog(t, `"msg":"worker ready"`)
	workerOf := func(name string) int { // outcome "worker" is <host>-<pid>
		for i, w := range workers {
			if strings.HasSuffix(name, fmt.Sprintf("-%d", w.cmd.Process.Pid)) {
				return i
			}
		}
		return -1
	}

	kv, err := js.KeyValue(context.Background(), cfg.JournalBucket)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := kv.Status(context.Background()); err != nil || st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas != 3 {
		t.Fatalf("journal bucket status %v, %v; want 3 replicas", st, err)
	}

	victimName := groups.leader(cfg.AlertsStream)
	var victim *clusterNode
	for _, nd := range nodes {
		if nd.name == victimName {
			victim = nd
		}
	}
	if victim == nil {
		t.Fatalf("the leader of %s is %q, not one of the test's servers", cfg.AlertsStream, victimName)
	}
	for _, name := range groups.names() {
		groups.moveLeader(t, name, victim.name)
	}

	// Outcome arrivals, by core subscriptions on every server: two of them outlive the kill.
	type arrival struct {
		at     time.Time
		worker int
	}
	var mu sync.Mutex
	arrived := map[string]arrival{}
	for i := range nodes {
		nc := connectCluster(t, nodes, i)
		if _, err := nc.Subscribe("soar.outcomes.>", func(m *nats.Msg) {
			now := time.Now()
			var o struct {
				Worker string `json:"worker"`
			}
			_ = json.Unmarshal(m.Data, &o)
			id := m.Header.Get(queue.HeaderAlertID)
			mu.Lock()
			if a, ok := arrived[id]; !ok || now.Before(a.at) {
				arrived[id] = arrival{now, workerOf(o.Worker)}
			}
			mu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}

	// The producer is on a server that survives (it would fail over if not).
	producer := 0
	for i, nd := range nodes {
		if nd != victim {
			producer = i
		}
	}
	pub := mustJetStream(t, connectCluster(t, nodes, producer))
	const (
		beforeKill, afterKill = 20, 20
		every                 = 100 * time.Millisecond
	)
	alertID := func(i int) string { return fmt.Sprintf("cl-%d", i) }
	var times []*alertTimes
	var pubs sync.WaitGroup
	// publish starts alerts at a steady rate until done says stop, each in its own goroutine so
	// that a publish held up by the leader change does not hold up the next.
	publish := func(done func(started int) bool) {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for started := 0; !done(started); started++ {
			i := len(times)
			at := &alertTimes{first: time.Now()}
			times = append(times, at)
			pubs.Add(1)
			go func() {
				defer pubs.Done()
				at.tries, at.err = publishStored(pub, alertID(i), 40*time.Second)
				at.stored = time.Now()
			}()
			<-tick.C
		}
	}
	count := func(n int) func(int) bool { return func(started int) bool { return started >= n } }

	publish(count(beforeKill))
	var led []string
	for _, name := range groups.names() {
		if groups.leader(name) == victim.name {
			led = append(led, name)
		}
	}
	if !slices.Contains(led, cfg.AlertsStream) {
		t.Fatalf("%s no longer leads %s", victim.name, cfg.AlertsStream)
	}
	killedAt := time.Now()
	victim.kill(t)

	// The server's part of the recovery: until every group the victim led has a new leader.
	var elections sync.Map // group -> time from the kill to its new leader
	var electing sync.WaitGroup
	for _, name := range led {
		electing.Add(1)
		go func() {
			defer electing.Done()
			for time.Since(killedAt) < 30*time.Second {
				if l := groups.leaderWithin(name, 200*time.Millisecond); l != "" && l != victim.name {
					elections.Store(name, time.Since(killedAt).Round(time.Millisecond))
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	publish(count(afterKill))
	pubs.Wait()
	electing.Wait()
	newLeaders := map[string]time.Duration{}
	var leadersBack time.Duration // the groups an alert's run needs; the dead-letter stream is not one
	for _, name := range led {
		d, ok := elections.Load(name)
		if !ok {
			t.Fatalf("30 s after the kill, %s has no new leader", name)
		}
		newLeaders[name] = d.(time.Duration)
		if name != cfg.DLQStream {
			leadersBack = max(leadersBack, d.(time.Duration))
		}
	}

	victim.start(t, bin)
	restartedAt := time.Now()
	clusterUntil(t, 30*time.Second, "the restarted server to catch up", func() bool {
		for _, name := range groups.names() {
			if !groups.whole(name) {
				return false
			}
		}
		return true
	})
	caughtUp := time.Now()
	// After the restart, alerts until each worker has published an outcome for one of them.
	restartFrom := len(times)
	bothWorking := func(started int) bool {
		if started < 5 {
			return false
		}
		if started >= 150 {
			return true // reported below
		}
		mu.Lock()
		defer mu.Unlock()
		seen := map[int]bool{}
		for i := restartFrom; i < len(times); i++ {
			if a, ok := arrived[alertID(i)]; ok {
				seen[a.worker] = true
			}
		}
		return seen[0] && seen[1]
	}
	publish(bothWorking)
	pubs.Wait()
	total := len(times)
	for i, at := range times {
		if at.err != nil {
			t.Fatalf("alert %s was not stored after %d tries: %v", alertID(i), at.tries, at.err)
		}
	}

	outcomeSubject := cfg.OutcomeSubject("phishing-quarantine")
	clusterUntil(t, 40*time.Second, "an outcome for every alert", func() bool {
		n, err := clusterStreamCount(js, cfg.OutcomesStream, outcomeSubject)
		return err == nil && n >= uint64(total)
	})
	var consumer *jetstream.ConsumerInfo
	clusterUntil(t, 20*time.Second, "every alert acked", func() bool {
		c, err := js.Consumer(context.Background(), cfg.AlertsStream, cfg.Consumer)
		if err != nil {
			return false
		}
		consumer = c.CachedInfo()
		return consumer.NumPending == 0 && consumer.NumAckPending == 0
	})

	// Exactly one stored outcome per alert, succeeded; nothing unmatched, nothing dead-lettered.
	var outcomes []*jetstream.RawStreamMsg
	clusterUntil(t, 20*time.Second, "the stored outcomes", func() bool {
		outcomes, err = clusterStreamMsgs(js, cfg.OutcomesStream, outcomeSubject)
		return err == nil
	})
	index := map[string]int{}
	for i := range total {
		index[alertID(i)] = i
	}
	stored := map[string]int{}
	storedAt := map[string]time.Time{}
	afterRestartBy := make([]int, len(workers))
	for _, m := range outcomes {
		id := m.Header.Get(queue.HeaderAlertID)
		stored[id]++
		storedAt[id] = m.Time
		var o struct {
			AlertID string `json:"alert_id"`
			Status  string `json:"status"`
			Worker  string `json:"worker"`
		}
		if err := json.Unmarshal(m.Data, &o); err != nil {
			t.Fatal(err)
		}
		if o.AlertID != id || o.Status != "succeeded" {
			t.Errorf("outcome of %s: alert_id %q, status %q; want succeeded", id, o.AlertID, o.Status)
		}
		if i, ok := index[id]; ok && i >= restartFrom {
			if w := workerOf(o.Worker); w >= 0 {
				afterRestartBy[w]++
			}
		}
	}
	for i := range total {
		if n := stored[alertID(i)]; n != 1 {
			t.Errorf("alert %s has %d outcomes, want exactly 1", alertID(i), n)
		}
	}
	if len(stored) != total {
		t.Errorf("outcomes for %d alert ids, want %d: %v", len(stored), total, stored)
	}
	if n, err := clusterStreamCount(js, cfg.OutcomesStream, ""); err != nil || n != uint64(total) {
		t.Errorf("the outcomes stream holds %d messages (%v), want %d", n, err, total)
	}
	if n, err := clusterStreamCount(js, cfg.DLQStream, ""); err != nil || n != 0 {
		t.Errorf("%d dead letters (%v), want none", n, err)
	}
	for i := range total {
		if got := fakes.hec.EntityState("ent-" + alertID(i)); got != "quarantined" {
			t.Errorf("entity of %s is %q, want quarantined", alertID(i), got)
		}
	}
	// Not asserted (docs/reliability.md's window between a vendor's success and its journal
	// record), but reported: quarantines a redelivery repeated because the journal write was lost.
	var repeated []string
	for i := range total {
		n := 0
		for _, r := range fakes.hec.Requests() {
			if r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/action/entity") && strings.Contains(string(r.Body), `"ent-`+alertID(i)+`"`) {
				n++
			}
		}
		if n != 1 {
			repeated = append(repeated, fmt.Sprintf("%s: %d", alertID(i), n))
		}
	}

	// Both workers still run, and each took alerts published after the restart.
	for i, w := range workers {
		select {
		case err := <-w.done:
			w.done <- err
			t.Errorf("worker %d exited during the test: %v\n%s", i, err, w.stderr)
		default:
		}
		if afterRestartBy[i] == 0 {
			t.Errorf("worker %d (pid %d) published no outcome for the %d alerts published after the restart", i, w.cmd.Process.Pid, total-restartFrom)
		}
	}

	// Recovery. The issue's figure is how long after the kill (or its first publish, if later)
	// each alert's outcome arrived. But after a SIGKILL nats-server's followers wait out their
	// raft election timeout (4 to 9 s, fixed in nats-server) before they elect new leaders, and
	// until then no producer can store an alert and no outcome can be stored. What the workers
	// own is the rest: every outcome within 5 s of the leaders of the alerts and outcomes
	// streams, the journal bucket and the consumer being back, or of its alert being stored if
	// later.
	const target = 5 * time.Second
	mu.Lock()
	defer mu.Unlock()
	back := killedAt.Add(leadersBack)
	var worstSteady, worstIssue, worstWorker time.Duration
	var late []string
	fromStored := 0
	for i, at := range times {
		id := alertID(i)
		a, ok := arrived[id]
		got := a.at
		if !ok {
			got, fromStored = storedAt[id], fromStored+1
		}
		if got.Before(killedAt) {
			worstSteady = max(worstSteady, got.Sub(at.first))
			continue
		}
		worstIssue = max(worstIssue, got.Sub(laterTime(at.first, killedAt)))
		took := got.Sub(laterTime(at.stored, back))
		worstWorker = max(worstWorker, took)
		if took > target {
			late = append(late, fmt.Sprintf("%s (published %+.2fs, stored %+.2fs after %d tries, outcome %+.2fs)",
				id, at.first.Sub(killedAt).Seconds(), at.stored.Sub(killedAt).Seconds(), at.tries, got.Sub(killedAt).Seconds()))
		}
	}
	t.Logf("cluster formed in %s; killed %s, leader of %v; new leaders after %v; restarted %+.2fs, caught up %+.2fs; %d alerts after the restart",
		formed.Sub(began).Round(time.Millisecond), victim.name, led, newLeaders,
		restartedAt.Sub(killedAt).Seconds(), caughtUp.Sub(killedAt).Seconds(), total-restartFrom)
	t.Logf("outcome latency: before the kill at most %s; after it at most %s from the kill or the first publish (the issue's 5 s figure); at most %s from the leaders' return (%+.2fs) or the alert's storing (the workers' part, target %s)",
		worstSteady.Round(time.Millisecond), worstIssue.Round(time.Millisecond), worstWorker.Round(time.Millisecond), leadersBack.Seconds(), target)
	t.Logf("consumer redelivered %d; quarantine calls other than one per alert %v; %d arrival times taken from the stored outcome; outcomes after the restart by worker %v; test took %s",
		consumer.NumRedelivered, repeated, fromStored, afterRestartBy, time.Since(began).Round(time.Millisecond))
	if len(late) > 0 {
		t.Errorf("%d outcomes arrived more than %s after the leaders' return (%+.2fs) or their alert's storing:\n  %s",
			len(late), target, leadersBack.Seconds(), strings.Join(late, "\n  "))
	}
	if len(late) > 0 || t.Failed() {
		for i, w := range workers {
			t.Logf("worker %d (pid %d) from 1 s before the kill:\n%s", i, w.cmd.Process.Pid,
				clusterLogWindow(w.stderr.String(), killedAt.Add(-time.Second), killedAt.Add(30*time.Second)))
		}
	}

	for _, w := range workers {
		w.stop(t)
	}
	for _, nd := range nodes {
		if nd.exited() {
			t.Errorf("server %s exited during the test\n%s", nd.name, nd.log)
		}
	}
}

func laterTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// clusterLogWindow keeps the worker's JSON log lines stamped between from and to, leaving out the
// per-step chatter.
func clusterLogWindow(log string, from, to time.Time) string {
	var keep []string
	for _, line := range strings.Split(log, "\n") {
		var l struct {
			TS  string `json:"ts"`
			Msg string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", l.TS)
		if err != nil || ts.Before(from) || ts.After(to) {
			continue
		}
		if l.Msg == "step succeeded" || l.Msg == "playbook finished" {
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n")
}
