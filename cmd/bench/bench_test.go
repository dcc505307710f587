package main

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/riposte-soar/riposte/internal/playbook"
)

// The bench's own checks, kept tiny: `make test` runs them, `make bench` runs the bench.

func TestPercentile(t *testing.T) {
	d := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 5}, {0.99, 10}, {0.1, 1}, {0, 1}} {
		if got := percentile(d, c.p); got != c.want {
			t.Errorf("percentile(%v) = %v, want %v", c.p, got, c.want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("percentile of nothing is not 0")
	}
}

func TestOutcomeBIsAbout500BytesOfJSON(t *testing.T) {
	b := outcomeB("alert-1", benchSubject, map[string]any{"type": "phishing", "eventId": "ev-1", "entityId": "e-1"})
	if len(b) < 480 || len(b) > 540 {
		t.Errorf("B's outcome is %d bytes, want about 500", len(b))
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil || v["alert_id"] != "alert-1" {
		t.Errorf("B's outcome %s: %v", b, err)
	}
}

// The generated playbooks load against the real catalogue; none of the condition case's matches
// the bench's alerts, and the vendor case's does.
func TestGeneratedPlaybooks(t *testing.T) {
	condDir, vendDir := t.TempDir(), t.TempDir()
	if err := conditionPlaybooks(condDir, 10); err != nil {
		t.Fatal(err)
	}
	if err := vendorPlaybook(vendDir); err != nil {
		t.Fatal(err)
	}
	cond, err := loadPlaybooks(condDir)
	if err != nil {
		t.Fatal(err)
	}
	vend, err := loadPlaybooks(vendDir)
	if err != nil {
		t.Fatal(err)
	}
	matches := func(pb *playbook.Playbook, matching bool) bool {
		var body map[string]any
		if err := json.Unmarshal(alertBody("a-1", matching), &body); err != nil {
			t.Fatal(err)
		}
		ok, err := pb.When(&playbook.Env{Alert: body, Subject: benchSubject, AlertID: "a-1"})
		if err != nil {
			t.Fatalf("%s: %v", pb.Name, err)
		}
		return ok && pb.MatchesSubject(benchSubject)
	}
	for _, pb := range cond {
		if !pb.MatchesSubject(benchSubject) || matches(pb, false) {
			t.Errorf("%s: on the subject %v, matches %v; want on it and not matching", pb.Name, pb.MatchesSubject(benchSubject), matches(pb, false))
		}
	}
	if len(vend) != 1 || !matches(vend[0], true) || matches(vend[0], false) {
		t.Errorf("the vendor playbook must match the matching alert only")
	}
}

func TestWriteKeepsWhatIsAroundTheMarkers(t *testing.T) {
	dir := t.TempDir()
	md, svg := filepath.Join(dir, "benchmarks.md"), filepath.Join(dir, "benchmarks.svg")
	rep := &report{
		Results: []*result{
			newResult("bare", "bare", 1000, usage{wall: time.Second, cpu: time.Second}, whereInProcess),
			{Key: "condition", Title: "a | b", Alerts: 10, Rate: 5, Use: usage{wall: time.Second},
				Fig: &figure{Label: "x ÷ y", Value: 0.5, Target: 0.8}},
			{Key: "latency", Title: "lat", Alerts: 10, Rate: 5, Use: usage{wall: time.Second},
				Fig: &figure{Label: "p99 <added>", Value: 2, Unit: "ms", Target: 3, AtMost: true}},
			{Key: "storm", Title: "storm", Alerts: 10, Rate: 5, Use: usage{wall: time.Second},
				Fig: &figure{Label: "per call", Value: 1, NoTarget: true}},
		},
		Machine: machine{CPU: "cpu & co", Cores: 2, Go: "go1.26", Date: time.Unix(0, 0).UTC()},
		Opts:    mustOptions(t),
	}
	if err := os.WriteFile(md, []byte("# Title\n\nbefore\n\n"+beginMarker+"\nold\n"+endMarker+"\n\nafter\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rep.write(md, svg); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(md)
	doc := string(b)
	for _, want := range []string{"before", "after", "a \\| b", "![each figure against its target](benchmarks.svg)", "**no**", "none yet"} {
		if !strings.Contains(doc, want) {
			t.Errorf("the document lacks %q:\n%s", want, doc)
		}
	}
	if strings.Contains(doc, "\nold\n") {
		t.Error("the old results were kept")
	}
	s, _ := os.ReadFile(svg)
	dec := xml.NewDecoder(strings.NewReader(string(s)))
	for {
		if _, err := dec.Token(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("the chart is not well-formed XML: %v\n%s", err, s)
		}
	}
	if got := rep.unmet(); len(got) != 1 {
		t.Errorf("unmet = %q, want the one ratio below its target", got)
	}
}

func mustOptions(t *testing.T) *options {
	t.Helper()
	o, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestFigureShowsWhyItMisses(t *testing.T) {
	for _, c := range []struct {
		f    figure
		want string
	}{
		{figure{Value: 0.9164, Target: 0.92}, "0.916"},
		{figure{Value: 0.91995, Target: 0.92}, "0.91995"},
		{figure{Value: 0.26, Target: 0.8}, "0.260"},
		{figure{Value: 2.996, Unit: "ms", Target: 3, AtMost: true}, "2.996 ms"},
		{figure{Value: 1, NoTarget: true}, "1.000"},
	} {
		if got := c.f.valueText(); got != c.want {
			t.Errorf("valueText(%v) = %q, want %q", c.f.Value, got, c.want)
		}
	}
}

func TestProfilePath(t *testing.T) {
	if got := profilePath("/tmp/cpu.pprof", "vendor"); got != "/tmp/cpu-vendor.pprof" {
		t.Errorf("profilePath = %q", got)
	}
}

func TestOptions(t *testing.T) {
	if _, err := parseOptions([]string{"-cases", "bare,nope"}, io.Discard); err == nil {
		t.Error("an unknown case was accepted")
	}
	o, err := parseOptions([]string{"-cases", "vendor", "-in-flight", "8", "-out", "docs/benchmarks.md"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.replicaInFlight != 8 || o.svg != "docs/benchmarks.svg" || len(o.cases) != 1 {
		t.Errorf("options = %+v", o)
	}
	if d := mustOptions(t); !slices.Contains(d.cases, "rss") {
		t.Errorf("the default run leaves out the rss case: %q", d.cases)
	}
}

func TestParseStatusKB(t *testing.T) {
	status := "Name:\tbench\nVmPeak:\t 1300 kB\nVmHWM:\t   40960 kB\nVmRSS:\t   39936 kB\nRssAnon:\t   21504 kB\nRssFile:\t   18432 kB\nThreads:\t7\n"
	got := parseStatusKB([]byte(status))
	for k, want := range map[string]int64{"VmHWM": 40960, "VmRSS": 39936, "RssAnon": 21504, "RssFile": 18432} {
		if got[k] != want {
			t.Errorf("%s = %d, want %d", k, got[k], want)
		}
	}
	if _, ok := got["Threads"]; ok {
		t.Error("a count was read as kB")
	}
}

// The rss row is judged by the child's own peak RSS against 48 MiB, a ceiling, and says where
// the memory is.
func TestRSSResult(t *testing.T) {
	rep := replicaReport{Acked: 1280, WallNS: int64(time.Second), CPUNS: int64(300 * time.Millisecond),
		PeakRSSKB: 50 * 1024, WiredRSSKB: 20 * 1024, WiredAnonKB: 5 * 1024, WiredFileKB: 15 * 1024, EndRSSKB: 45 * 1024, EndAnonKB: 27 * 1024, EndFileKB: 18 * 1024,
		Heap: heapFigures{PeakInuse: 12 << 20, PeakSys: 20 << 20, Inuse: 10 << 20, Sys: 20 << 20, NumGC: 9},
		GOGC: 100, MemLimit: math.MaxInt64, GOMAXPROCS: 2}
	r := rssResult(1280, 64, 50*time.Millisecond, rep, 200*time.Millisecond, 0, 0.3)
	if r.Fig == nil || r.Fig.met() || r.Fig.targetText() != "≤ 48 MiB" || r.Fig.valueText() != "50.00 MiB" {
		t.Fatalf("figure %+v: want 50.00 MiB, not meeting ≤ 48 MiB", r.Fig)
	}
	if r.Where != whereChild || r.rssMiB() != 50 {
		t.Errorf("row %q, peak RSS %v MiB", r.Where, r.rssMiB())
	}
	notes := strings.Join(r.Notes, "; ")
	for _, want := range []string{"HeapInuse peak 12.0", "HeapSys peak 20.0", "GOGC 100", "GOMEMLIMIT none", "20.0 once wired, before the first alert: 5.0 anonymous + 15.0 file-backed", "27.0 anonymous + 18.0 file-backed", "riposte's process 0.30 s (0.234 s per 1k alerts), the server's 0.20 s"} {
		if !strings.Contains(notes, want) {
			t.Errorf("the notes lack %q: %s", want, notes)
		}
	}
	rep.PeakRSSKB, rep.GOGC, rep.MemLimit = 40*1024, -1, 40<<20
	r = rssResult(1280, 64, 50*time.Millisecond, rep, 0, 0, 0.3)
	if notes := strings.Join(r.Notes, "; "); !r.Fig.met() || !strings.Contains(notes, "GOGC off, GOMEMLIMIT 40 MiB") {
		t.Errorf("40 MiB under GOGC=off GOMEMLIMIT=40MiB: met %v, %s", r.Fig.met(), notes)
	}
}
