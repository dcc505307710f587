package main

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	whereInProcess = "in-process"
	whereChild     = "child process"
)

// result is one row of the table.
type result struct {
	Key, Title string
	Alerts     int
	Use        usage
	Where      string
	Rate       float64 // alerts per second
	Ref        string  // what the case is compared with
	RefRate    float64
	Fig        *figure // the figure the case is judged by; nil for the floors
	P50, P99   float64 // latency only: ms added over the vendor
	Notes      []string
}

// figure is a case's ratio (or, for latency, milliseconds) and its target.
type figure struct {
	Label    string
	Value    float64
	Unit     string // "" for a ratio
	Target   float64
	AtMost   bool // the target is a ceiling (latency), not a floor
	NoTarget bool // nothing to aim at yet (storm: batching does not exist)
}

func (f *figure) met() bool {
	switch {
	case f.NoTarget:
		return true
	case f.AtMost:
		return f.Value <= f.Target
	}
	return f.Value >= f.Target
}

// valueText shows the figure with enough digits that it visibly meets or misses its target:
// 0.916 against 0.92 must not read "0.92".
func (f *figure) valueText() string {
	digits := 3 // a ratio
	if f.Unit != "" {
		digits = 2
	}
	text := strconv.FormatFloat(f.Value, 'f', digits, 64)
	for !f.NoTarget && digits < 6 && text == strconv.FormatFloat(f.Target, 'f', digits, 64) && f.Value != f.Target {
		digits++
		text = strconv.FormatFloat(f.Value, 'f', digits, 64)
	}
	if f.Unit != "" {
		return text + " " + f.Unit
	}
	return text
}

func (f *figure) targetText() string {
	switch {
	case f.NoTarget:
		return "none yet"
	case f.AtMost:
		return fmt.Sprintf("≤ %g %s", f.Target, f.Unit)
	}
	return fmt.Sprintf("≥ %.2f", f.Target)
}

func newResult(key, title string, n int, u usage, where string) *result {
	return &result{Key: key, Title: title, Alerts: n, Use: u, Where: where, Rate: float64(n) / u.wall.Seconds()}
}

func (r *result) setRef(what string, rate float64) { r.Ref, r.RefRate = what, rate }

// cpuPer1k is CPU seconds per 1,000 alerts.
func (r *result) cpuPer1k() float64 { return r.Use.cpu.Seconds() * 1000 / float64(r.Alerts) }

func (r *result) rssMiB() float64 { return float64(r.Use.rssKB) / 1024 }

func (r *result) summary() string {
	s := fmt.Sprintf("%8.0f alerts/s in %6.2fs  peak RSS %5.0f MiB  CPU %.3f s/1k alerts  machine %3.0f%% busy", r.Rate, r.Use.wall.Seconds(), r.rssMiB(), r.cpuPer1k(), 100*r.Use.busy)
	if r.Fig != nil {
		s += fmt.Sprintf("  %s %s (target %s)", r.Fig.Label, r.Fig.valueText(), r.Fig.targetText())
	}
	return s
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// machine is where and when the run happened.
type machine struct {
	CPU, Go, NATSServer, NATSGo, Commit, OS, LoadBefore, LoadAfter string
	Cores                                                          int
	Date                                                           time.Time
}

func machineInfo(st *stack) machine {
	m := machine{CPU: cpuModel(), Cores: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH,
		NATSServer: st.serverVersion, NATSGo: "unknown", Commit: gitCommit(), LoadBefore: st.loadBefore, LoadAfter: loadAverage(),
		Date: time.Now().UTC()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/nats-io/nats-server/v2":
				m.NATSServer = d.Version
			case "github.com/nats-io/nats.go":
				m.NATSGo = d.Version
			}
		}
	}
	return m
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// loadAverage is the 1, 5 and 15 minute load average: the machine is shared.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += " (with uncommitted changes)"
	}
	return c
}

type report struct {
	Results []*result
	Machine machine
	Opts    *options
	Took    time.Duration
}

// unmet lists the figures below their targets.
func (rep *report) unmet() []string {
	var out []string
	for _, r := range rep.Results {
		if r.Fig != nil && !r.Fig.met() {
			out = append(out, fmt.Sprintf("%s %s (target %s)", r.Fig.Label, r.Fig.valueText(), r.Fig.targetText()))
		}
	}
	return out
}

// table is the results as a Markdown table, for the terminal and the docs alike.
func (rep *report) table() string {
	var b strings.Builder
	b.WriteString("| case | runs | alerts | alerts/s | compared with | figure | target | met | peak RSS MiB | CPU s per 1k alerts | machine busy | notes |\n")
	b.WriteString("|---|---|--:|--:|---|--:|---|---|--:|--:|--:|---|\n")
	for _, r := range rep.Results {
		ref, fig, target, met := "", "", "", ""
		if r.Ref != "" {
			ref = fmt.Sprintf("%s = %.0f/s", r.Ref, r.RefRate)
		}
		if r.Fig != nil {
			fig, target = r.Fig.valueText(), r.Fig.targetText()
			switch {
			case r.Fig.NoTarget:
				met = "—"
			case r.Fig.met():
				met = "yes"
			default:
				met = "**no**"
			}
		}
		notes := r.Notes
		if r.Use.hecCPU > 0 {
			notes = append(slices.Clone(notes), fmt.Sprintf("fake HEC %.3f s per 1k", r.Use.hecCPU.Seconds()*1000/float64(r.Alerts)))
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %s | %s | %s | %s | %.0f | %.3f | %.0f%% | %s |\n",
			cell(r.Title), r.Where, r.Alerts, r.Rate, cell(ref), fig, target, met, r.rssMiB(), r.cpuPer1k(), 100*r.Use.busy, cell(strings.Join(notes, "; ")))
	}
	return b.String()
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// Markers around what the bench writes into the Markdown file; the rest is kept as it is.
const (
	beginMarker = "<!-- bench:results:begin (written by `make bench`; edit outside these markers) -->"
	endMarker   = "<!-- bench:results:end -->"
)

// write puts the run into the Markdown file between the markers, keeping what is around them,
// and writes the chart.
func (rep *report) write(mdPath, svgPath string) error {
	if err := os.WriteFile(svgPath, []byte(rep.svg()), 0o644); err != nil {
		return err
	}
	section := rep.markdown(relPath(mdPath, svgPath))
	old, err := os.ReadFile(mdPath)
	var doc string
	switch {
	case errors.Is(err, os.ErrNotExist):
		doc = "# Benchmarks\n\n" + section + "\n"
	case err != nil:
		return err
	default:
		s := string(old)
		i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
		if i < 0 || j < i {
			return fmt.Errorf("%s has no %q … %q section to replace; add the two markers where the results go", mdPath, beginMarker, endMarker)
		}
		doc = s[:i] + section + s[j+len(endMarker):]
	}
	return os.WriteFile(mdPath, []byte(doc), 0o644)
}

func relPath(from, to string) string {
	if rel, err := filepath.Rel(filepath.Dir(from), to); err == nil {
		return filepath.ToSlash(rel)
	}
	return to
}

func (rep *report) markdown(svgRef string) string {
	m, o := rep.Machine, rep.Opts
	var b strings.Builder
	b.WriteString(beginMarker + "\n\n")
	fmt.Fprintf(&b, "Run of %s (UTC), `go run ./cmd/bench %s`, %s in all.\n\n", m.Date.Format("2006-01-02 15:04"), strings.Join(rep.flags(), " "), rep.Took.Round(time.Second))
	fmt.Fprintf(&b, "Machine: %s, %d cores (%s), %s, nats-server %s (module), nats.go %s; commit %s. "+
		"Load average before the run %s, after it %s: the machine is shared, so read the ratios, which compare cases of this one run.\n\n",
		m.CPU, m.Cores, m.OS, m.Go, m.NATSServer, m.NATSGo, m.Commit, m.LoadBefore, m.LoadAfter)
	fmt.Fprintf(&b, "![each figure against its target](%s)\n\n", svgRef)
	b.WriteString(rep.table())
	fmt.Fprintf(&b, "\nSettings: %d alerts per throughput case and round, %d rounds; vendor-bound cases sized to run %s at their ideal rate; "+
		"N = %d in flight (vendor-bound, latency, storm), %d per replica (replicas); HEC answers every request in %s; "+
		"latency at %d alerts/s; storm of %d; %d playbooks in the condition case; riposte logs at %q, JSON-encoded to nowhere.\n\n",
		o.alerts, o.rounds, o.duration, o.inFlight, o.replicaInFlight, o.vendorDelay, o.rate, o.storm, o.playbooks, o.logLevel)
	b.WriteString(endMarker)
	return b.String()
}

// flags are the options that differ from the defaults, to say how the run was made.
func (rep *report) flags() []string {
	d, err := parseOptions(nil, nil)
	if err != nil {
		return nil
	}
	o := rep.Opts
	var f []string
	add := func(differs bool, s string) {
		if differs {
			f = append(f, s)
		}
	}
	add(o.alerts != d.alerts, fmt.Sprintf("-alerts %d", o.alerts))
	add(o.rounds != d.rounds, fmt.Sprintf("-rounds %d", o.rounds))
	add(o.duration != d.duration, fmt.Sprintf("-duration %s", o.duration))
	add(strings.Join(o.cases, ",") != strings.Join(d.cases, ","), "-cases "+strings.Join(o.cases, ","))
	add(o.inFlight != d.inFlight, fmt.Sprintf("-in-flight %d", o.inFlight))
	add(o.replicaInFlight != d.replicaInFlight, fmt.Sprintf("-replica-in-flight %d", o.replicaInFlight))
	add(fmt.Sprint(o.replicas) != fmt.Sprint(d.replicas), "-replicas "+strings.Trim(strings.ReplaceAll(fmt.Sprint(o.replicas), " ", ","), "[]"))
	add(o.vendorDelay != d.vendorDelay, "-vendor-latency "+o.vendorDelay.String())
	add(o.rate != d.rate, fmt.Sprintf("-rate %d", o.rate))
	add(o.storm != d.storm, fmt.Sprintf("-storm %d", o.storm))
	add(o.playbooks != d.playbooks, fmt.Sprintf("-playbooks %d", o.playbooks))
	add(o.logLevel != d.logLevel, "-log-level "+o.logLevel)
	add(o.cpuProfile != "", "-cpuprofile …")
	add(o.memProfile != "", "-memprofile …")
	if o.out != "" {
		f = append(f, "-out "+o.out)
	}
	return f
}

// svg draws each figure against its target: the dashed line is the target, a bar reaching past
// it (or, for a ceiling such as latency, stopping short of it) meets it.
func (rep *report) svg() string {
	var figs []*result
	for _, r := range rep.Results {
		if r.Fig != nil {
			figs = append(figs, r)
		}
	}
	const (
		width, left, barMax, rowH, top = 900.0, 300.0, 360.0, 34.0, 60.0
		targetX                        = left + barMax/1.5 // the target sits at two thirds of the bar's room
		valueX                         = left + barMax + 14
	)
	height := top + rowH*float64(len(figs)) + 52
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="13">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="12" y="22" font-size="15" font-weight="bold">riposte make bench: each figure against its target</text>`+"\n")
	fmt.Fprintf(&b, `<text x="12" y="40" fill="#555">%s · %d cores · %s · %s UTC</text>`+"\n",
		html.EscapeString(rep.Machine.CPU), rep.Machine.Cores, html.EscapeString(rep.Machine.Go), rep.Machine.Date.Format("2006-01-02 15:04"))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle" fill="#333" font-size="11">target</text>`+"\n", targetX, top-4)
	for i, r := range figs {
		f := r.Fig
		y := top + rowH*float64(i)
		target := f.Target
		if f.NoTarget {
			target = 1
		}
		frac := 0.0
		if target > 0 {
			frac = f.Value / target
		}
		w := math.Max(2, math.Min(frac, 1.5)*(targetX-left))
		color := "#c0392b" // misses its target
		switch {
		case f.NoTarget:
			color = "#95a5a6"
		case f.met():
			color = "#27ae60"
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%s</text>`+"\n", left-10, y+20, html.EscapeString(f.Label))
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.1f" height="22" fill="%s"/>`+"\n", left, y+5, w, color)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">%s <tspan fill="#555">(target %s)</tspan></text>`+"\n", valueX, y+20,
			html.EscapeString(f.valueText()), html.EscapeString(f.targetText()))
	}
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#333" stroke-dasharray="4 3"/>`+"\n", targetX, top, targetX, top+rowH*float64(len(figs)))
	fmt.Fprintf(&b, `<text x="12" y="%.0f" fill="#555" font-size="12">Each bar is its figure ÷ its target, so the dashed line is every target. Green meets it, red misses it, grey has no target yet.</text>`+"\n", height-28)
	fmt.Fprintf(&b, `<text x="12" y="%.0f" fill="#555" font-size="12">Latency and RSS are ceilings: their bars should stop short of the line. Bars are cut at 1.5 × the target.</text>`+"\n", height-12)
	b.WriteString("</svg>\n")
	return b.String()
}
