// Command bench is `make bench`: in one run it starts an embedded JetStream server with file
// storage and a fake HEC that answers in 50 ms, measures the floors (a bare pull + ack consumer,
// and B, a minimal pull → parse → publish → ack pipeline written as well as we can, in this
// process and in a child process), then riposte itself on the same server, each case as a ratio
// to its reference: 50 playbooks none of which match against B; one HEC action with N alerts
// in flight against N ÷ 50 ms, and the peak RSS of one such replica in a process of its own;
// 1, 2 and 4 replicas; the latency publish → outcome at a fixed
// rate; and a storm of quarantines. Every case checks that each alert got exactly one outcome,
// or the run fails. It prints a table and, with -out, writes it into docs/benchmarks.md with
// the machine, the date and a chart (docs/benchmarks.svg).
//
// Ratios are the figures to read: the machine is shared, so absolute rates move from run to
// run, while a ratio of two cases of one run moves much less.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// allCases is every case, in the order they run and are reported.
var allCases = []string{"bare", "pipeline", "condition", "vendor", "rss", "replicas", "latency", "storm"}

type options struct {
	alerts          int           // alerts per throughput case (bare, pipeline, condition)
	rounds          int           // rounds of the throughput cases
	duration        time.Duration // how long each vendor-bound case should take at its ideal rate
	cases           []string
	inFlight        int // N: alerts in flight in the vendor-bound, latency and storm cases
	replicaInFlight int // alerts in flight per replica in the replicas case
	replicas        []int
	vendorDelay     time.Duration
	rate            int // alerts per second in the latency case
	storm           int // quarantines published at once in the storm case
	playbooks       int // non-matching playbooks in the condition case
	logLevel        string
	out             string // Markdown file to write the results into; "" writes none
	svg             string // chart file; "" next to out
	cpuProfile      string
	memProfile      string
	keep            bool // keep the temporary store (for looking at it afterwards)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == childFlag {
		// A process this command started: the fake HEC, or B or a riposte replica in a process
		// of its own.
		os.Exit(runChild(os.Args[2:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./cmd/bench [flags]   (make bench BENCH_FLAGS='...')\n\ncases: %s\n\n", strings.Join(allCases, ", "))
		fs.PrintDefaults()
	}
	fs.IntVar(&o.alerts, "alerts", 20000, "alerts per throughput case (bare, pipeline, condition) and round")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds of the throughput cases; each is reported from its median round")
	fs.DurationVar(&o.duration, "duration", 8*time.Second, "how long each vendor-bound case (vendor, each replica count, latency) runs at its ideal rate")
	casesFlag := fs.String("cases", strings.Join(allCases, ","), "comma-separated cases to run")
	fs.IntVar(&o.inFlight, "in-flight", 64, "N: alerts in flight (--max-in-flight) in the vendor, latency and storm cases")
	fs.IntVar(&o.replicaInFlight, "replica-in-flight", 0, "alerts in flight per replica in the replicas case (0: the same as -in-flight)")
	replicasFlag := fs.String("replicas", "1,2,4", "replica counts of the replicas case; each after the first is compared with the first: thr(n) ÷ (n ÷ n₀ × thr(n₀))")
	fs.DurationVar(&o.vendorDelay, "vendor-latency", 50*time.Millisecond, "how long the fake HEC takes to answer every request")
	fs.IntVar(&o.rate, "rate", 200, "alerts per second published in the latency case")
	fs.IntVar(&o.storm, "storm", 1000, "quarantines published at once in the storm case")
	fs.IntVar(&o.playbooks, "playbooks", 50, "playbooks on the alert's subject, none matching, in the condition case")
	fs.StringVar(&o.logLevel, "log-level", "info", "riposte's log level; lines are JSON-encoded as worker run would, then dropped (off: no logger at all)")
	fs.StringVar(&o.out, "out", "", "write the results into this Markdown file (make bench: docs/benchmarks.md), keeping its hand-written parts")
	fs.StringVar(&o.svg, "svg", "", "write the chart here (default: benchmarks.svg beside -out)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of each in-process case, and of the replica child's window (rss), to this file, the case's name inserted before the extension")
	fs.StringVar(&o.memProfile, "memprofile", "", "write an allocation profile after each in-process case (cumulative since start: profile one case with -cases), and the replica child's heap profile (rss)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary JetStream store and playbooks")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, c := range strings.Split(*casesFlag, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if !slices.Contains(allCases, c) {
			return nil, fmt.Errorf("unknown case %q: the cases are %s", c, strings.Join(allCases, ", "))
		}
		if !slices.Contains(o.cases, c) {
			o.cases = append(o.cases, c)
		}
	}
	for _, r := range strings.Split(*replicasFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-replicas %q: give replica counts such as 1,2,4", *replicasFlag)
		}
		o.replicas = append(o.replicas, n)
	}
	var bad []string
	if o.alerts < 100 {
		bad = append(bad, "-alerts must be at least 100")
	}
	if o.duration < time.Second {
		bad = append(bad, "-duration must be at least 1s")
	}
	if o.replicaInFlight == 0 {
		o.replicaInFlight = o.inFlight
	}
	if o.inFlight < 1 || o.replicaInFlight < 1 {
		bad = append(bad, "-in-flight and -replica-in-flight must be at least 1")
	}
	if o.vendorDelay <= 0 {
		bad = append(bad, "-vendor-latency must be positive")
	}
	if o.rate < 1 || o.storm < 1 || o.playbooks < 1 || o.rounds < 1 {
		bad = append(bad, "-rate, -storm, -playbooks and -rounds must be at least 1")
	}
	if len(bad) > 0 {
		return nil, errors.New(strings.Join(bad, "; "))
	}
	if o.svg == "" && o.out != "" {
		o.svg = strings.TrimSuffix(o.out, ".md") + ".svg"
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	began := time.Now()
	st, err := startStack(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer st.close()
	fmt.Fprintf(stderr, "bench: JetStream %s (file storage in %s), fake HEC answering in %s at %s\n",
		st.serverVersion, st.dir, o.vendorDelay, st.hec.url)

	var results []*result
	add := func(r *result) {
		results = append(results, r)
		fmt.Fprintf(stderr, "bench: %-44s %s\n", r.Title, r.summary())
	}
	// The CPU-bound cases (the floors and condition-only) run in rounds, each round all of them
	// back to back, so that a ratio compares cases measured seconds apart; each is reported
	// from its median round, and condition-only's ratio is the median of the rounds' ratios.
	perRound := map[string][]*result{}
	var order []string
	keep := func(r *result) {
		if _, ok := perRound[r.Key]; !ok {
			order = append(order, r.Key)
		}
		perRound[r.Key] = append(perRound[r.Key], r)
		fmt.Fprintf(stderr, "bench: %-44s %s\n", r.Title, r.summary())
	}
	for round := 1; round <= o.rounds && slices.ContainsFunc(o.cases, isThroughputCase); round++ {
		fmt.Fprintf(stderr, "bench: round %d of %d\n", round, o.rounds)
		var b *result
		for _, c := range o.cases {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var r *result
			switch c {
			case "bare":
				r, err = st.bare(ctx, o.alerts)
			case "pipeline":
				if b, err = st.pipelineInProcess(ctx, o.alerts); err == nil {
					keep(b)
					r, err = st.pipelineChild(ctx, o.alerts)
				}
			case "condition":
				r, err = st.condition(ctx, o.alerts, b)
			default:
				continue
			}
			if err != nil {
				return fmt.Errorf("case %s, round %d: %w", c, round, err)
			}
			keep(r)
		}
	}
	for _, key := range order {
		results = append(results, medianRound(perRound[key]))
	}
	// condition-only ÷ B from the two medians, so that the row's own numbers give its figure.
	if c, b := find(results, "condition"), find(results, "pipeline"); c != nil && b != nil && c.Fig != nil {
		c.setRef("B in-process, median", b.Rate)
		f := *c.Fig
		f.Value = c.Rate / b.Rate
		c.Fig = &f
		// On a saturated machine throughput follows CPU per alert, which other tenants disturb
		// less than they do the rate.
		c.Notes = append(c.Notes, fmt.Sprintf("by CPU per alert, B's ÷ this: %.2f", b.cpuPer1k()/c.cpuPer1k()))
	}
	for _, c := range o.cases {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch c {
		case "vendor":
			r, rerr := st.vendorBound(ctx)
			if err = rerr; err == nil {
				add(r)
			}
		case "rss":
			r, rerr := st.rssCase(ctx)
			if err = rerr; err == nil {
				add(r)
			}
		case "replicas":
			var first *result
			for _, n := range o.replicas {
				r, rerr := st.replicaRun(ctx, n, first)
				if err = rerr; err != nil {
					break
				}
				add(r)
				if first == nil {
					first = r
				}
			}
		case "latency":
			r, rerr := st.latency(ctx)
			if err = rerr; err == nil {
				add(r)
			}
		case "storm":
			r, rerr := st.stormCase(ctx)
			if err = rerr; err == nil {
				add(r)
			}
		}
		if err != nil {
			return fmt.Errorf("case %s: %w", c, err)
		}
	}
	rep := &report{Results: results, Machine: machineInfo(st), Opts: o, Took: time.Since(began)}
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, rep.table())
	if o.out != "" {
		if err := rep.write(o.out, o.svg); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench: wrote %s and %s\n", o.out, o.svg)
	}
	if failed := rep.unmet(); len(failed) > 0 {
		// Targets are goals, not checks: missing one is a finding, not a failed run.
		fmt.Fprintf(stderr, "bench: below target: %s\n", strings.Join(failed, "; "))
	}
	return nil
}

func find(rs []*result, key string) *result {
	for _, r := range rs {
		if r.Key == key {
			return r
		}
	}
	return nil
}

// isThroughputCase says whether a case is CPU-bound, run in rounds.
func isThroughputCase(c string) bool { return c == "bare" || c == "pipeline" || c == "condition" }

// medianRound is a case's median round by rate, with every round's rate (and figure) in the
// notes.
func medianRound(rs []*result) *result {
	sorted := slices.Clone(rs)
	slices.SortFunc(sorted, func(a, b *result) int { return cmp.Compare(a.Rate, b.Rate) })
	m := *sorted[len(sorted)/2]
	m.Notes = slices.Clone(m.Notes)
	if len(rs) > 1 {
		rates := make([]string, len(rs))
		for i, r := range rs {
			rates[i] = strconv.FormatFloat(r.Rate, 'f', 0, 64)
		}
		m.Notes = append(m.Notes, fmt.Sprintf("median of %d rounds: %s alerts/s", len(rs), strings.Join(rates, ", ")))
	}
	if m.Fig != nil && len(rs) > 1 {
		texts := make([]string, 0, len(rs))
		for _, r := range rs {
			if r.Fig != nil {
				texts = append(texts, r.Fig.valueText())
			}
		}
		m.Notes = append(m.Notes, "each round's own ratio: "+strings.Join(texts, ", "))
	}
	return &m
}
