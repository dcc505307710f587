package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const reloadQuarantine = `name: reload-quarantine
on: [soar.alerts.checkpoint.>]
steps:
  - id: quarantine
    action: checkpoint.quarantine_entity
    with:
      entityIds: ${{ [alert.entityId] }}
`

const reloadRestore = `name: reload-restore
on: [soar.alerts.checkpoint.>]
steps:
  - id: restore
    action: checkpoint.restore_entity
    with:
      entityIds: ${{ [alert.entityId] }}
`

func writePlaybook(t *testing.T, dir, name, body string) {
	t.Helper()
	// Written aside and renamed into place, as editors and ConfigMaps do: never half a file.
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func postReload(t *testing.T, s *stack) (int, string) {
	t.Helper()
	resp, err := http.Post(s.httpURL+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := make([]byte, 4096)
	n, _ := resp.Body.Read(b)
	return resp.StatusCode, string(b[:n])
}

// A good edit is swapped in, a broken one is refused with its file:line problems while the last
// good set keeps serving, and the metrics say how the last reload went.
func TestReloadAppliesGoodEditsAndRefusesBrokenOnes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writePlaybook(t, dir, "p.yaml", reloadQuarantine)
	s := startStack(t, dir, withHTTP)

	s.publish("soar.alerts.checkpoint.phishing", "before", `{"entityId":"ent-before"}`, nil)
	s.await("SOAR_OUTCOMES", "soar.outcomes.reload-quarantine")

	writePlaybook(t, dir, "p.yaml", reloadRestore)
	if code, body := postReload(t, s); code != http.StatusOK {
		t.Fatalf("POST /-/reload = %d %s", code, body)
	}
	s.publish("soar.alerts.checkpoint.phishing", "after", `{"entityId":"ent-after"}`, nil)
	s.await("SOAR_OUTCOMES", "soar.outcomes.reload-restore")
	if s.hec.EntityState("ent-after") != "restored" {
		t.Errorf("after the reload ent-after is %q, want restored", s.hec.EntityState("ent-after"))
	}

	writePlaybook(t, dir, "p.yaml", strings.Replace(reloadRestore, "checkpoint.restore_entity", "checkpoint.restore_entiy", 1))
	code, body := postReload(t, s)
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "p.yaml:5:") || !strings.Contains(body, "did you mean checkpoint.restore_entity") {
		t.Errorf("a broken edit: %d %q", code, body)
	}
	s.publish("soar.alerts.checkpoint.phishing", "broken", `{"entityId":"ent-broken"}`, nil)
	s.eventually("the last good set to run the alert", func() bool { return s.hec.EntityState("ent-broken") == "restored" })
	s.awaitMetrics(`riposte_playbooks_last_reload_successful 0`, `riposte_playbooks_reloads_total{result="failure"} 1`,
		`riposte_playbooks_reloads_total{result="success"} 1`)
}

// A playbook that needs a vendor not configured at start cannot be reloaded in: its credentials
// were never checked.
func TestReloadRefusesAVendorNotConfigured(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writePlaybook(t, dir, "p.yaml", reloadQuarantine) // HEC only: GravityZone is not configured
	s := startStack(t, dir, withHTTP)
	writePlaybook(t, dir, "gz.yaml", `name: gz
on: [soar.alerts.gravityzone.>]
steps:
  - id: isolate
    action: gravityzone.isolate_endpoint
    with:
      endpointId: ${{ alert.endpointId }}
`)
	code, body := postReload(t, s)
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, `playbook "gz" step "isolate": action gravityzone.isolate_endpoint needs a vendor this worker did not configure at start`) {
		t.Errorf("reload with an unconfigured vendor: %d %q", code, body)
	}
}

// Changing a file under the playbooks directory is enough: the watcher reloads.
func TestReloadOnFileChange(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writePlaybook(t, dir, "p.yaml", reloadQuarantine)
	s := startStack(t, dir, nil)
	writePlaybook(t, dir, "p.yaml", reloadRestore)
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		id := "watch-" + string(rune('a'+i%26))
		s.publish("soar.alerts.checkpoint.phishing", id+time.Now().Format("150405.000"), `{"entityId":"ent-`+id+`"}`, nil)
		time.Sleep(300 * time.Millisecond)
		if s.hec.EntityState("ent-"+id) == "restored" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the edited playbook was never picked up")
		}
	}
}

// SIGHUP reloads and does not stop the worker (it used to kill it with status 129).
func TestSIGHUPReloads(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writePlaybook(t, dir, "p.yaml", reloadQuarantine)
	fakes := startFakeVendors(t)
	p := startProcess(t, fakes.environ(map[string]string{"RIPOSTE_PLAYBOOKS": dir, "RIPOSTE_HTTP_ADDR": "",
		"RIPOSTE_NATS_LISTEN": freeAddr(t), "RIPOSTE_DATA_DIR": t.TempDir()}), "run")
	p.waitLog(t, `"msg":"worker ready"`)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, `"msg":"playbooks reloaded"`)
	if !strings.Contains(p.stderr.String(), `"trigger":"SIGHUP"`) {
		t.Errorf("reload not attributed to SIGHUP\n%s", p.stderr)
	}
	p.stop(t)
}
