package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/riposte-soar/riposte/internal/queue"
	"github.com/riposte-soar/riposte/internal/queue/queuetest"
)

// These tests run the built binary the way an operator does: configuration from docs/configuration.md's
// environment variables only, a signal to stop.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func workerBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the worker binary")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "riposte-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "worker")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// proc is a running `worker run`.
type proc struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startProcess(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(workerBinary(t), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	p := &proc{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// stop sends SIGTERM and requires a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("worker exited with %v after SIGTERM\n%s", err, p.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("worker still running 30s after SIGTERM\n%s", p.stderr)
	}
}

func (p *proc) waitLog(t *testing.T, fragment string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.stderr.String(), fragment) {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("worker exited (%v) before logging %q\n%s", err, fragment, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker did not log %q\n%s", fragment, p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// runTool runs a short-lived subcommand of the binary (publish, watch).
func runTool(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, workerBinary(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("worker %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}

func TestProcessRunsFromEnvironmentAndStopsOnSIGTERM(t *testing.T) {
	t.Parallel()
	emb := queuetest.StartJetStream(t)
	fakes := startFakeVendors(t)
	hec := fakes.hec
	httpAddr := freeAddr(t)

	p := startProcess(t, fakes.environ(map[string]string{
		"NATS_URL": emb.URL(), "RIPOSTE_PLAYBOOKS": shippedPlaybooks, "RIPOSTE_HTTP_ADDR": httpAddr,
	}), "run")
	p.waitLog(t, `"msg":"worker ready"`)

	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d", path, resp.StatusCode)
		}
	}

	out := runTool(t, phishing("proc-1", "ev-1", "ent-proc"), "publish", "--nats-url", emb.URL(),
		"--subject", "soar.alerts.checkpoint.phishing", "--id", "proc-1", "-")
	if !strings.Contains(out, "stream SOAR_ALERTS") {
		t.Errorf("publish printed %q", out)
	}
	nc := queuetest.Connect(t, emb)
	s := &stack{t: t, nc: nc, hec: hec}
	s.js = mustJetStream(t, nc)
	o := outcomeOf(t, s.await("SOAR_OUTCOMES", "soar.outcomes.phishing-quarantine"))
	if o["alert_id"] != "proc-1" || o["status"] != "succeeded" {
		t.Errorf("outcome = %v", o)
	}
	if got := hec.EntityState("ent-proc"); got != "quarantined" {
		t.Errorf("entity state = %q, want quarantined", got)
	}
	p.stop(t)
	if strings.Contains(p.stderr.String(), testAccessKey) {
		t.Errorf("the logs contain the HEC access key")
	}
}

func TestProcessStartsEmbeddedServerWithPersistentStore(t *testing.T) {
	t.Parallel()
	listen, dataDir := freeAddr(t), t.TempDir()
	env := []string{
		"RIPOSTE_NATS_LISTEN=" + listen, "RIPOSTE_DATA_DIR=" + dataDir, "RIPOSTE_SIMULATE=true",
		"RIPOSTE_PLAYBOOKS=" + shippedPlaybooks, "RIPOSTE_HTTP_ADDR=",
	}
	p := startProcess(t, env, "run")
	p.waitLog(t, `"msg":"worker ready"`)
	if strings.Contains(p.stderr.String(), "serving health") {
		t.Errorf("RIPOSTE_HTTP_ADDR set but empty should disable the endpoints\n%s", p.stderr)
	}
	if !strings.Contains(p.stderr.String(), "nats://"+listen) {
		t.Errorf("the worker did not log the URL to publish to\n%s", p.stderr)
	}
	url := "nats://" + listen

	watch := exec.Command(workerBinary(t), "watch", "--nats-url", url, "--count", "1", "--json")
	watch.Env = []string{"PATH=" + os.Getenv("PATH")}
	stdout, err := watch.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	watchErr := &lockedBuffer{}
	watch.Stderr = watchErr
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = watch.Process.Kill(); _ = watch.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(watchErr.String(), "watching") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}

	runTool(t, phishing("sim-1", "ev-anything", "ent-sim"), "publish", "--nats-url", url,
		"--subject", "soar.alerts.checkpoint.phishing", "-")
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("watch: %v\n%s", err, watchErr)
	}
	for _, want := range []string{"soar.outcomes.phishing-quarantine ", `"alert_id":"sim-1"`, `"status":"succeeded"`, `"simulated":true`} {
		if !strings.Contains(line, want) {
			t.Errorf("watch printed %q; want %s in it", line, want)
		}
	}
	p.stop(t)

	// The store outlives the process: a second run on the same data directory still has it. It
	// listens on a port of its own: the first one's, once free, may have been taken by another
	// test's connection meanwhile.
	listen = freeAddr(t)
	env[0], url = "RIPOSTE_NATS_LISTEN="+listen, "nats://"+listen
	p2 := startProcess(t, env, "run")
	p2.waitLog(t, `"msg":"worker ready"`)
	nc := connectURL(t, url)
	s := &stack{t: t, nc: nc, js: mustJetStream(t, nc)}
	if n := s.count("SOAR_OUTCOMES", "soar.outcomes.phishing-quarantine"); n != 1 {
		t.Errorf("after a restart the outcome stream holds %d outcomes, want 1", n)
	}
	p2.stop(t)
}

func TestRunRefusesToStart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"broken playbook", map[string]string{"RIPOSTE_PLAYBOOKS": "testdata/broken"},
			[]string{"testdata/broken/bad.yaml:6: ", `unknown action "checkpoint.quarantine"`}},
		{"missing vendor variables", map[string]string{"RIPOSTE_PLAYBOOKS": shippedPlaybooks},
			[]string{"checkpoint (used by credential-theft-chain, phishing-quarantine, phishing-release-false-positive): HEC_CLIENT_ID, HEC_ACCESS_KEY not set",
				"gravityzone (used by credential-theft-chain, gravityzone-false-positive, gravityzone-incident-containment): GZ_BASE_URL, GZ_API_KEY not set",
				"cyberark (used by credential-theft-chain, pta-close-remediated): PVWA_BASE_URL, PVWA_USERNAME, PVWA_PASSWORD not set"}},
		// A malformed value is reported beside the missing ones, not hidden behind them.
		{"unknown region and a bad auth method", map[string]string{"RIPOSTE_PLAYBOOKS": shippedPlaybooks, "HEC_REGION": "mars",
			"HEC_CLIENT_ID": "a", "PVWA_AUTH_METHOD": "kerberos", "GZ_RATE_LIMIT": "-1"},
			[]string{"HEC_ACCESS_KEY not set", "HEC_REGION", "mars", "PVWA_AUTH_METHOD", "kerberos", "GZ_RATE_LIMIT", "GZ_BASE_URL, GZ_API_KEY not set"}},
		{"bad environment value", map[string]string{"RIPOSTE_MAX_IN_FLIGHT": "lots"},
			[]string{`RIPOSTE_MAX_IN_FLIGHT="lots"`}},
		{"no playbooks", map[string]string{"RIPOSTE_PLAYBOOKS": t.TempDir()},
			[]string{"no playbooks"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			code := dispatch(context.Background(), []string{"run"}, mapEnv(tt.env), nil, io.Discard, &stderr)
			if code != 1 {
				t.Errorf("exit code = %d, want 1\n%s", code, stderr.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if code := dispatch(context.Background(), []string{"validate", "--playbooks", shippedPlaybooks}, noEnv, nil, &out, &errOut); code != 0 {
		t.Fatalf("validate shipped playbooks: exit %d\n%s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "phishing-quarantine") {
		t.Errorf("validate printed %q", out.String())
	}
	errOut.Reset()
	if code := dispatch(context.Background(), []string{"validate", "--playbooks", "testdata/broken"}, noEnv, nil, &out, &errOut); code != 1 {
		t.Errorf("validate broken playbooks: exit %d, want 1", code)
	}
	want := `testdata/broken/bad.yaml:6: step "q": unknown action "checkpoint.quarantine"; did you mean checkpoint.quarantine_entity?`
	if lines := strings.Split(strings.TrimSpace(errOut.String()), "\n"); len(lines) != 2 || lines[1] != want {
		t.Errorf("validate printed %q; want a header, then each problem on its own line starting with file:line:\n%s", errOut.String(), want)
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if code := dispatch(context.Background(), nil, noEnv, nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "usage") {
		t.Errorf("no command: exit %d, %q", code, errOut.String())
	}
	if code := dispatch(context.Background(), []string{"frobnicate"}, noEnv, nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, %q", code, errOut.String())
	}
	if code := dispatch(context.Background(), []string{"run", "--no-such-flag"}, noEnv, nil, &out, &errOut); code != 2 {
		t.Errorf("unknown flag: exit %d", code)
	}
}

func noEnv(string) (string, bool) { return "", false }

// A second replica on the same host with the same metrics address still processes alerts.
func TestProcessKeepsRunningWhenMetricsAddressIsTaken(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	listen := freeAddr(t)
	p := startProcess(t, []string{
		"RIPOSTE_NATS_LISTEN=" + listen, "RIPOSTE_DATA_DIR=" + t.TempDir(), "RIPOSTE_SIMULATE=1",
		"RIPOSTE_PLAYBOOKS=" + shippedPlaybooks, "RIPOSTE_HTTP_ADDR=" + ln.Addr().String(),
	}, "run")
	p.waitLog(t, `"msg":"worker ready"`)
	if !strings.Contains(p.stderr.String(), "endpoints unavailable") {
		t.Errorf("the worker did not say why its endpoints are missing\n%s", p.stderr)
	}
	runTool(t, phishing("taken-1", "ev-1", "ent-1"), "publish", "--nats-url", "nats://"+listen,
		"--subject", "soar.alerts.checkpoint.phishing", "-")
	nc := connectURL(t, "nats://"+listen)
	s := &stack{t: t, nc: nc, js: mustJetStream(t, nc)}
	if o := outcomeOf(t, s.await("SOAR_OUTCOMES", "soar.outcomes.phishing-quarantine")); o["status"] != "succeeded" {
		t.Errorf("outcome = %v", o)
	}
	p.stop(t)
}

// Scaling is "start another": two processes on one server share the durable consumer, every
// alert gets exactly one outcome, and both replicas take a share.
func TestProcessReplicasShareTheConsumer(t *testing.T) {
	t.Parallel()
	emb := queuetest.StartJetStream(t)
	env := []string{
		"NATS_URL=" + emb.URL(), "RIPOSTE_SIMULATE=true", "RIPOSTE_MAX_IN_FLIGHT=2",
		"RIPOSTE_PLAYBOOKS=" + shippedPlaybooks, "RIPOSTE_HTTP_ADDR=",
	}
	a := startProcess(t, env, "run")
	b := startProcess(t, env, "run")
	a.waitLog(t, `"msg":"worker ready"`)
	b.waitLog(t, `"msg":"worker ready"`)

	nc := queuetest.Connect(t, emb)
	s := &stack{t: t, nc: nc, js: mustJetStream(t, nc), cfg: queue.DefaultConfig()}
	const n = 40
	for i := range n {
		id := fmt.Sprintf("scale-%d", i)
		s.publish("soar.alerts.checkpoint.phishing", id, phishing(id, "ev-1", "ent-"+id), nil)
	}
	s.eventually("every outcome", func() bool { return s.count("SOAR_OUTCOMES", "soar.outcomes.phishing-quarantine") >= n })
	s.settled()
	seen := map[string]bool{}
	workers := map[string]int{}
	for _, m := range s.all("SOAR_OUTCOMES", "soar.outcomes.phishing-quarantine") {
		var o struct {
			AlertID string `json:"alert_id"`
			Worker  string `json:"worker"`
		}
		if err := json.Unmarshal(m.Data(), &o); err != nil {
			t.Fatal(err)
		}
		if seen[o.AlertID] {
			t.Errorf("alert %s has two outcomes", o.AlertID)
		}
		seen[o.AlertID] = true
		workers[o.Worker]++
	}
	if len(seen) != n {
		t.Errorf("%d alerts have outcomes, want %d", len(seen), n)
	}
	if len(workers) != 2 {
		t.Errorf("outcomes by worker = %v, want both replicas to have taken a share", workers)
	}
	a.stop(t)
	b.stop(t)
}

// Nothing is lost when a worker dies mid-alert: the alert comes back after AckWait to another
// replica, which does not repeat the step the dead one finished.
func TestProcessCrashMidAlertLosesNothing(t *testing.T) {
	t.Parallel()
	emb := queuetest.StartJetStream(t)
	fakes := startFakeVendors(t)
	hec := fakes.hec
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/action/entity") {
			first := false
			once.Do(func() { first = true })
			if first { // hold the first quarantine until its worker is dead
				close(entered)
				<-release
				http.Error(w, "gone", http.StatusServiceUnavailable)
				return
			}
		}
		hec.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	env := fakes.environ(map[string]string{
		"NATS_URL": emb.URL(), "HEC_BASE_URL": srv.URL,
		"RIPOSTE_PLAYBOOKS": shippedPlaybooks, "RIPOSTE_HTTP_ADDR": "", "RIPOSTE_ACK_WAIT": "1s",
	})
	a := startProcess(t, env, "run")
	a.waitLog(t, `"msg":"worker ready"`)
	nc := queuetest.Connect(t, emb)
	s := &stack{t: t, nc: nc, js: mustJetStream(t, nc), cfg: queue.DefaultConfig()}
	s.publish("soar.alerts.checkpoint.phishing", "crash-1", phishing("crash-1", "ev-1", "ent-crash"), nil)
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatalf("the quarantine never reached the vendor\n%s", a.stderr)
	}
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	close(release)

	b := startProcess(t, env, "run")
	o := outcomeOf(t, s.await("SOAR_OUTCOMES", "soar.outcomes.phishing-quarantine"))
	s.settled()
	// The second delivery may find the dead worker's claim on the quarantine still live (it
	// lapses after the ack wait) and wait for it: a third then runs it. Neither is a vendor
	// failure.
	if d, _ := o["deliveries"].(json.Number).Int64(); o["status"] != "succeeded" || d < 2 || d > 3 || o["failed_deliveries"] != nil {
		t.Errorf("outcome = %v, want succeeded on the second or third delivery, no vendor failure counted", o)
	}
	gets := 0
	for _, r := range hec.Requests() {
		if strings.Contains(r.Path, "/event/") {
			gets++
		}
	}
	if gets != 1 {
		t.Errorf("get_event reached the vendor %d times, want 1: the dead worker's finished step is reused", gets)
	}
	if got := hec.EntityState("ent-crash"); got != "quarantined" {
		t.Errorf("entity state = %q, want quarantined", got)
	}
	b.stop(t)
}
