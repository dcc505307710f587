package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

const (
	chainSHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	waitForNote = 10 * time.Second
)

// One playbook acting on all three vendors through embedded JetStream: the mail is quarantined
// at HEC, the endpoint isolated and the file blocklisted at GravityZone, the PTA event reopened
// through PVWA, and one outcome says so, with no secret in it.
func TestOnePlaybookActsOnAllThreeVendors(t *testing.T) {
	t.Parallel()
	s := startStack(t, shippedPlaybooks, nil)
	f := s.vendors
	notes, err := s.nc.SubscribeSync("soar.notifications.soc")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	s.publish("soar.alerts.siem.credential-theft", "chain-1",
		`{"mailEntityId":"mail-77","endpointId":"ep-77","sha256":["`+chainSHA256+`"],"ptaEventId":"pta-1","account":"root@db01"}`, nil)

	m := s.await("SOAR_OUTCOMES", "soar.outcomes.credential-theft-chain")
	s.settled()
	o := outcomeOf(t, m)
	if o["status"] != "succeeded" {
		t.Fatalf("outcome %s", m.Data)
	}
	var got []string
	for _, st := range o["steps"].([]any) {
		step := st.(map[string]any)
		got = append(got, step["id"].(string)+":"+step["status"].(string))
	}
	if want := "quarantine:succeeded isolate:succeeded blocklist:succeeded reopen:succeeded notify:succeeded"; strings.Join(got, " ") != want {
		t.Errorf("steps %v, want %s", got, want)
	}

	// What each vendor did, as the vendor saw it.
	if st := f.hec.EntityState("mail-77"); st != "quarantined" {
		t.Errorf("HEC entity state %q, want quarantined", st)
	}
	if !f.gz.Isolated("ep-77") {
		t.Error("GravityZone endpoint ep-77 not isolated")
	}
	items := f.gz.BlocklistItems()
	if len(items) != 1 || items[0]["hash"] != chainSHA256 {
		t.Errorf("GravityZone blocklist %v, want the one hash", items)
	}
	if st := f.pta.EventStatus("pta-1"); !strings.EqualFold(st, "open") {
		t.Errorf("PTA event status %q, want open", st)
	}
	if f.pta.Effects("reopen", "pta-1") != 1 || f.gz.Effects("isolate", "ep-77") != 1 || f.hec.Effects("quarantine", "mail-77") != 1 {
		t.Errorf("effects: reopen %d, isolate %d, quarantine %d; want one each",
			f.pta.Effects("reopen", "pta-1"), f.gz.Effects("isolate", "ep-77"), f.hec.Effects("quarantine", "mail-77"))
	}
	note, err := notes.NextMsg(waitForNote)
	if err != nil {
		t.Fatalf("no SOC notification: %v", err)
	}
	var text map[string]any
	if err := json.Unmarshal(note.Data, &text); err != nil || !strings.Contains(text["text"].(string), "isolated") {
		t.Errorf("notification %s", note.Data)
	}
	if got := note.Header.Get(nats.MsgIdHdr); got != "chain-1:notify" {
		t.Errorf("notification Nats-Msg-Id %q", got)
	}
	for _, secret := range f.secrets() {
		if strings.Contains(string(m.Data), secret) {
			t.Error("the outcome carries a vendor secret")
		}
	}
}

// Each shipped playbook for GravityZone and PTA, with the alert its header describes.
func TestShippedVendorPlaybooks(t *testing.T) {
	t.Parallel()
	s := startStack(t, shippedPlaybooks, nil)
	f := s.vendors
	s.publish("soar.alerts.gravityzone.incident", "gz-1",
		`{"incidentId":"inc-9","incidentType":"extendedIncidents","severity":"critical","endpointId":"ep-9","sha256":["`+chainSHA256+`"]}`, nil)
	s.publish("soar.alerts.gravityzone.incident", "gz-low",
		`{"incidentId":"inc-10","severity":"low","endpointId":"ep-10"}`, nil)
	s.publish("soar.alerts.cyberark.pta", "pta-close", `{"eventId":"pta-2","remediation":"credentials-rotated"}`, nil)
	for _, pb := range []string{"gravityzone-incident-containment", "pta-close-remediated"} {
		if o := outcomeOf(t, s.await("SOAR_OUTCOMES", "soar.outcomes."+pb)); o["status"] != "succeeded" {
			t.Errorf("%s: outcome %v", pb, o)
		}
	}
	if !f.gz.Isolated("ep-9") {
		t.Error("ep-9 not isolated for a critical incident")
	}
	// The analyst's verdict comes once the containment is done.
	s.publish("soar.alerts.gravityzone.verdict", "gz-fp", `{"incidentId":"inc-9","incidentType":"extendedIncidents","endpointId":"ep-9","verdict":"false_positive","analyst":"ana"}`, nil)
	if o := outcomeOf(t, s.await("SOAR_OUTCOMES", "soar.outcomes.gravityzone-false-positive")); o["status"] != "succeeded" {
		t.Errorf("gravityzone-false-positive: outcome %v", o)
	}
	s.settled()
	if inc, ok := f.gz.Incident("extendedIncidents", "inc-9"); !ok || inc.Status != 4 || !strings.Contains(inc.Note, "False positive (ana)") {
		t.Errorf("incident inc-9 = %+v, %t; want false positive (4) with the analyst's note", inc, ok)
	}
	if f.gz.Isolated("ep-9") {
		t.Error("ep-9 still isolated after the false-positive verdict")
	}
	if f.gz.Effects("isolate", "ep-10") != 0 {
		t.Error("a low-severity incident isolated its endpoint")
	}
	if st := f.pta.EventStatus("pta-2"); !strings.EqualFold(st, "closed") {
		t.Errorf("PTA event pta-2 %q, want closed", st)
	}
}

// Copies of one alert (one body id, no Nats-Msg-Id for JetStream to drop them by) delivered at
// once call each vendor step once: the step claims make the others wait and reuse the result.
func TestCopiesOfOneAlertCallTheVendorOnce(t *testing.T) {
	t.Parallel()
	s := startStack(t, shippedPlaybooks, nil)
	for range 5 {
		s.publish("soar.alerts.checkpoint.phishing", "", phishing("same-body-id", "ev-1", "ent-copies"), nil)
	}
	s.await("SOAR_OUTCOMES", "soar.outcomes.phishing-quarantine")
	s.settled()
	if n := s.hec.Effects("quarantine", "ent-copies"); n != 1 {
		t.Errorf("quarantined %d times, want once", n)
	}
	gets := 0
	for _, r := range s.hec.Requests() {
		if r.Method == "GET" && strings.HasSuffix(r.Path, "/event/ev-1") {
			gets++
		}
	}
	if gets != 1 {
		t.Errorf("the event was read %d times, want once", gets)
	}
	if n := s.count("SOAR_OUTCOMES", "soar.outcomes.phishing-quarantine"); n != 1 {
		t.Errorf("%d outcomes, want one", n)
	}
}

// What the journal's TTL means for a producer that re-sends an alert id: inside the TTL the
// steps are replayed, no vendor called; after it they run again. (The outcome of a re-sent id
// is dropped as a duplicate inside the outcomes' duplicate window either way.)
func TestJournalTTLForAReSentAlertID(t *testing.T) {
	t.Parallel()
	s := startStack(t, "testdata/fast-retry", func(st *settings) { st.queue.JournalTTL = time.Second })
	send := func() {
		s.publish("soar.alerts.checkpoint.phishing", "", phishing("resent-1", "ev-1", "ent-resent"), nil)
		s.settled()
	}
	send()
	s.await("SOAR_OUTCOMES", "soar.outcomes.fast-quarantine")
	send() // inside the TTL
	if n := s.hec.Effects("quarantine", "ent-resent"); n != 1 {
		t.Errorf("re-sent inside the journal TTL: quarantined %d times, want once", n)
	}
	time.Sleep(1500 * time.Millisecond) // the TTL is a bucket setting: nothing to poll but time
	send()
	s.eventually("the step run again after the TTL", func() bool { return s.hec.Effects("quarantine", "ent-resent") == 2 })
	if n := s.count("SOAR_OUTCOMES", "soar.outcomes.fast-quarantine"); n != 1 {
		t.Errorf("%d outcomes for one alert id inside the duplicate window, want 1", n)
	}
}

// A new version of a playbook in shadow beside the live one, on the same alert: one vendor
// call, two outcomes, the shadow one saying what it would have sent.
func TestShadowPlaybookBesideTheLiveOne(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	live, err := os.ReadFile(filepath.Join(shippedPlaybooks, "phishing-quarantine.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	shadow := strings.Replace(string(live), "name: phishing-quarantine", "name: phishing-quarantine-v2\nmode: shadow", 1)
	shadow = strings.Replace(shadow, `"riposte: malicious phishing`, `"riposte v2: malicious phishing`, 1)
	for name, body := range map[string]string{"live.yaml": string(live), "v2.yaml": shadow} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := startStack(t, dir, nil)
	s.publish("soar.alerts.checkpoint.phishing", "shadow-1", phishing("shadow-1", "ev-1", "ent-shadow"), nil)
	liveOut := outcomeOf(t, s.await("SOAR_OUTCOMES", "soar.outcomes.phishing-quarantine"))
	shadowOut := outcomeOf(t, s.await("SOAR_OUTCOMES", "soar.outcomes.phishing-quarantine-v2"))
	s.settled()
	if liveOut["status"] != "succeeded" || shadowOut["status"] != "shadowed" {
		t.Fatalf("live %v, shadow %v", liveOut["status"], shadowOut["status"])
	}
	if n := s.hec.Effects("quarantine", "ent-shadow"); n != 1 {
		t.Errorf("quarantined %d times, want once: by the live playbook only", n)
	}
	steps := shadowOut["steps"].([]any)
	q := steps[1].(map[string]any)
	in, _ := q["output"].(map[string]any)
	if q["status"] != "shadowed" || !strings.Contains(fmt.Sprint(in["entityActionParam"]), "riposte v2") || fmt.Sprint(in["entityIds"]) != "[ent-shadow]" {
		t.Errorf("shadow quarantine step = %v", q)
	}
}
