package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/queue"
)

// envFlags defines flags whose defaults come from environment variables, so that a flag beats
// its variable and the variable beats the built-in default.
type envFlags struct {
	fs     *flag.FlagSet
	lookup environ
	errs   []error
	// takesFile says the command reads one positional argument (a file, or - for stdin).
	takesFile bool
	// envOnly are the variables that have no flag, listed by -h after the flags.
	envOnly []envVar
}

// envVar is an environment variable without a flag, for -h.
type envVar struct{ name, doc string }

// envOnlyVars are the NATS and vendor variables, listed by `worker run -h`.
func envOnlyVars() []envVar {
	vars := []envVar{
		{"NATS_URL", "server(s) to connect to, comma-separated (or --nats-url); unset: an embedded server"},
		{"NATS_CREDS", "path of a .creds file (JWT)"},
		{"NATS_NKEY_SEED", "a user nkey seed, or the path of a seed file (NATS_NKEY is taken too); also NATS_NKEY_SEED_FILE"},
		{"NATS_TOKEN", "token; also NATS_TOKEN_FILE"},
		{"NATS_USER", "user name"},
		{"NATS_PASSWORD", "password; also NATS_PASSWORD_FILE"},
		{"NATS_CA", "CA certificate file for TLS"},
		{"NATS_CERT", "client certificate file for mutual TLS"},
		{"NATS_KEY", "client key file for mutual TLS"},
	}
	for _, v := range vendorList() {
		for _, d := range v.Vars {
			doc := v.Name + ": " + d.Doc
			if d.Required {
				doc += " (required when a playbook uses " + v.Name + ")"
			}
			if d.Default != "" {
				doc += " (default " + d.Default + ")"
			}
			if d.Secret {
				doc += "; also " + d.Name + "_FILE"
			}
			vars = append(vars, envVar{d.Name, doc})
		}
	}
	return vars
}

// printUsage is -h: the flags with their variables, then the variables without flags.
func (f *envFlags) printUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: worker %s [flags]\n\nflags (each also set by the environment variable named):\n", f.fs.Name())
	f.fs.SetOutput(w)
	f.fs.PrintDefaults()
	if len(f.envOnly) > 0 {
		fmt.Fprint(w, "\nenvironment only:\n")
		for _, v := range f.envOnly {
			fmt.Fprintf(w, "  %s\n    \t%s\n", v.name, v.doc)
		}
	}
}

// environ looks up an environment variable, telling unset from set-but-empty (os.LookupEnv).
type environ func(string) (string, bool)

// get is the variable's value, "" when unset.
func (e environ) get(name string) string {
	v, _ := e(name)
	return v
}

func newEnvFlags(name string, env environ) *envFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = nil // parseFlags prints printUsage, unless a command sets its own
	return &envFlags{fs: fs, lookup: env}
}

func (f *envFlags) usage(text, env string) string {
	if env == "" {
		return text
	}
	return text + " (env " + env + ")"
}

func (f *envFlags) String(p *string, name, env, def, text string) {
	if v := f.env(env); v != "" {
		def = v
	}
	f.fs.StringVar(p, name, def, f.usage(text, env))
}

// StringOrEmpty is String for a setting whose empty value means something ("off"): a variable
// that is set but empty overrides the default.
func (f *envFlags) StringOrEmpty(p *string, name, env, def, text string) {
	if v, ok := f.lookup(env); ok && env != "" {
		def = strings.TrimSpace(v)
	}
	f.fs.StringVar(p, name, def, f.usage(text, env))
}

func (f *envFlags) Int(p *int, name, env string, def int, text string) {
	f.fs.IntVar(p, name, fromEnv(f, env, def, strconv.Atoi, "not a whole number"), f.usage(text, env))
}

func (f *envFlags) Int64(p *int64, name, env string, def int64, text string) {
	parse := func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }
	f.fs.Int64Var(p, name, fromEnv(f, env, def, parse, "not a whole number"), f.usage(text, env))
}

func (f *envFlags) Duration(p *time.Duration, name, env string, def time.Duration, text string) {
	f.fs.DurationVar(p, name, fromEnv(f, env, def, time.ParseDuration, "not a duration (e.g. 30s, 5m)"), f.usage(text, env))
}

func (f *envFlags) Bool(p *bool, name, env string, def bool, text string) {
	f.fs.BoolVar(p, name, fromEnv(f, env, def, parseBool, "not true or false"), f.usage(text, env))
}

// fromEnv is the default a flag takes from its variable: def when the variable is unset or
// empty, and def too, with the problem recorded for Parse to report, when it does not parse.
func fromEnv[T any](f *envFlags, env string, def T, parse func(string) (T, error), want string) T {
	v := f.env(env)
	if v == "" {
		return def
	}
	parsed, err := parse(v)
	if err != nil {
		f.errs = append(f.errs, fmt.Errorf("%s=%q: %s", env, v, want))
		return def
	}
	return parsed
}

func (f *envFlags) env(name string) string {
	if name == "" {
		return ""
	}
	return strings.TrimSpace(f.lookup.get(name))
}

// settings is everything `worker run` and `worker demo` are configured with.
type settings struct {
	playbooks   string
	dataDir     string
	httpAddr    string
	natsListen  string
	logLevel    string
	logFormat   string
	simulate    bool
	subjects    string
	queue       queue.Config
	natsURL     string
	natsAuth    queue.Auth
	vendorEnv   func(string) (string, error)
	maxInFlight int
	breaker     actions.GuardSettings
	console     consoleSettings // the web console and the listener's TLS (console.go)
	pprof       bool
	// warnings are settings that work but are likely a mistake, logged at start.
	warnings []string
	env      environ
}

// defineCommon declares the flags shared by the commands that read playbooks.
func defineCommon(f *envFlags, s *settings) {
	defineCommonWithLogs(f, s, "info", "json")
}

// defineCommonWithLogs is defineCommon with other logging defaults (the demo's are quieter).
func defineCommonWithLogs(f *envFlags, s *settings, level, format string) {
	f.String(&s.playbooks, "playbooks", "RIPOSTE_PLAYBOOKS", "./playbooks", "directory of playbook files")
	f.String(&s.logLevel, "log-level", "RIPOSTE_LOG_LEVEL", level, "log level: debug, info, warn, error")
	f.String(&s.logFormat, "log-format", "RIPOSTE_LOG_FORMAT", format, "log format: json or console")
}

// defineWorker declares the flags of a running worker.
func defineWorker(f *envFlags, s *settings) {
	d := queue.DefaultConfig()
	q := &s.queue
	f.String(&s.natsURL, "nats-url", "NATS_URL", "", "NATS server(s) to connect to, comma-separated; empty starts an embedded server")
	f.String(&s.dataDir, "data-dir", "RIPOSTE_DATA_DIR", "./data", "the embedded server's JetStream store (only when NATS_URL is unset)")
	f.StringOrEmpty(&s.httpAddr, "http-addr", "RIPOSTE_HTTP_ADDR", ":9464", "metrics and health endpoints; empty disables")
	f.String(&s.natsListen, "nats-listen", "RIPOSTE_NATS_LISTEN", "127.0.0.1:4222", "where the embedded server listens (only when NATS_URL is unset)")
	f.Int(&s.maxInFlight, "max-in-flight", "RIPOSTE_MAX_IN_FLIGHT", d.MaxInFlight, "alerts processed at once by one replica")
	f.Int(&q.MaxAckPending, "max-ack-pending", "RIPOSTE_MAX_ACK_PENDING", 0, "the shared consumer's max_ack_pending when the worker creates it: room for every alert waiting out a vendor outage (default 20000, or max-in-flight × 16 when larger)")
	f.String(&q.Consumer, "consumer", "RIPOSTE_CONSUMER", d.Consumer, "the shared durable consumer's name")
	f.Bool(&s.simulate, "simulate", "RIPOSTE_SIMULATE", false, "every vendor is its in-process fake")
	g := actions.DefaultGuardSettings(d.MaxInFlight)
	f.Int(&s.breaker.Failures, "breaker-failures", "RIPOSTE_BREAKER_FAILURES", g.Failures, "retryable failures in a row that open a vendor's circuit breaker")
	f.Duration(&s.breaker.OpenFor, "breaker-open-for", "RIPOSTE_BREAKER_OPEN_FOR", g.OpenFor, "how long an open breaker holds a vendor's steps back before one probe (doubles after each failed probe)")
	f.String(&q.AlertsStream, "alerts-stream", "RIPOSTE_ALERTS_STREAM", d.AlertsStream, "stream of alerts")
	f.String(&s.subjects, "alerts-subjects", "RIPOSTE_ALERTS_SUBJECTS", strings.Join(d.AlertsSubjects, ","), "comma-separated subjects the alerts stream captures when the worker creates it")
	f.String(&q.OutcomesStream, "outcomes-stream", "RIPOSTE_OUTCOMES_STREAM", d.OutcomesStream, "stream of outcomes")
	f.String(&q.OutcomesPrefix, "outcomes-prefix", "RIPOSTE_OUTCOMES_PREFIX", d.OutcomesPrefix, "outcomes go to <prefix>.<playbook>")
	f.String(&q.DLQStream, "dlq-stream", "RIPOSTE_DLQ_STREAM", d.DLQStream, "stream of dead letters")
	f.String(&q.DLQPrefix, "dlq-prefix", "RIPOSTE_DLQ_PREFIX", d.DLQPrefix, "dead letters go to <prefix>.<reason>")
	f.String(&q.JournalBucket, "journal-bucket", "RIPOSTE_JOURNAL_BUCKET", d.JournalBucket, "key-value bucket of completed steps")
	f.String(&q.ApprovalsStream, "approvals-stream", "RIPOSTE_APPROVALS_STREAM", d.ApprovalsStream, "stream of approval requests and decisions")
	f.String(&q.ApprovalsPrefix, "approvals-prefix", "RIPOSTE_APPROVALS_PREFIX", d.ApprovalsPrefix, "approval requests go to <prefix>.<playbook>, decisions come on <prefix>.decisions")
	f.String(&q.ApprovalsBucket, "approvals-bucket", "RIPOSTE_APPROVALS_BUCKET", d.ApprovalsBucket, "key-value bucket of the approval gates waiting or decided")
	f.Duration(&q.JournalTTL, "journal-ttl", "RIPOSTE_JOURNAL_TTL", d.JournalTTL, "how long a completed step is remembered")
	f.Int64(&q.JournalMaxBytes, "journal-max-bytes", "RIPOSTE_JOURNAL_MAX_BYTES", d.JournalMaxBytes, "size limit of the journal bucket, when the worker creates it")
	f.Int(&q.Replicas, "stream-replicas", "RIPOSTE_STREAM_REPLICAS", d.Replicas, "replicas of the streams and buckets the worker creates (3 on a cluster)")
	f.Int(&q.MaxDeliver, "max-deliver", "RIPOSTE_MAX_DELIVER", d.MaxDeliver, "deliveries ending in a vendor failure before an alert is dead-lettered as exhausted")
	f.Int(&q.MaxDeliveries, "max-deliveries", "RIPOSTE_MAX_DELIVERIES", d.MaxDeliveries, "cap on all deliveries of one alert, whatever ended them (crashes, ack-wait expiries, shutdowns)")
	f.Duration(&q.MaxHeldBack, "max-held-back", "RIPOSTE_MAX_HELD_BACK", d.MaxHeldBack, "how long an alert may wait for a vendor whose circuit breaker holds it back")
	f.Duration(&q.AckWait, "ack-wait", "RIPOSTE_ACK_WAIT", d.AckWait, "the consumer's ack wait when the worker creates it")
	f.Duration(&q.RetryDelay, "retry-delay", "RIPOSTE_RETRY_DELAY", d.RetryDelay, "redelivery delay after a failed delivery; doubles each time")
	f.Duration(&q.MaxRetryDelay, "max-retry-delay", "RIPOSTE_MAX_RETRY_DELAY", d.MaxRetryDelay, "cap on the redelivery delay")
	f.Duration(&q.MaxRetryAfter, "max-retry-after", "RIPOSTE_MAX_RETRY_AFTER", d.MaxRetryAfter, "cap on how long a vendor's Retry-After may hold an alert back")
	f.Duration(&q.DuplicateWindow, "duplicate-window", "RIPOSTE_DUPLICATE_WINDOW", d.DuplicateWindow, "Nats-Msg-Id de-duplication window of the streams the worker creates")
	f.Int(&q.MaxAlertBytes, "max-alert-bytes", "RIPOSTE_MAX_ALERT_BYTES", d.MaxAlertBytes, "larger alerts are dead-lettered as too_large")
	f.Duration(&q.GracePeriod, "grace-period", "RIPOSTE_GRACE_PERIOD", d.GracePeriod, "how long shutdown waits for alerts in flight")
	f.Bool(&s.pprof, "pprof", "RIPOSTE_PPROF", false, "serve Go's profiles (net/http/pprof) on --http-addr at /debug/pprof/, for diagnosing CPU and memory")
	c := &s.console
	f.Bool(&c.enabled, "console", "RIPOSTE_CONSOLE", false, "serve the web console on --http-addr at /console (off a loopback address it needs --console-tokens or --http-client-ca)")
	f.String(&c.tokensFile, "console-tokens", "RIPOSTE_CONSOLE_TOKENS", "", "file of console operators, one \"name token\" per line: an operator signs in with the token and decides as the name")
	f.String(&c.tlsCert, "http-tls-cert", "RIPOSTE_HTTP_TLS_CERT", "", "PEM certificate (chain) for HTTPS on --http-addr; with --http-tls-key")
	f.String(&c.tlsKey, "http-tls-key", "RIPOSTE_HTTP_TLS_KEY", "", "PEM private key of --http-tls-cert")
	f.String(&c.clientCA, "http-client-ca", "RIPOSTE_HTTP_CLIENT_CA", "", "PEM CA certificates of console operators' client certificates (mutual TLS; the certificate's CN is the operator's name)")
}

// finish completes settings after parsing: derived values and the environment-only variables.
// It reports every unusable value at once; none is silently replaced by a default.
func (s *settings) finish(env environ) error {
	s.env = env
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	s.queue.MaxInFlight = s.maxInFlight
	if s.maxInFlight < 1 {
		bad("--max-in-flight must be at least 1, got %d", s.maxInFlight)
	}
	if s.breaker.Failures < 1 || s.breaker.OpenFor <= 0 {
		bad("--breaker-failures must be at least 1 and --breaker-open-for positive, got %d and %s", s.breaker.Failures, s.breaker.OpenFor)
	}
	q := s.queue
	for _, c := range []struct {
		flag string
		v    int64
		min  int64
	}{
		{"--max-deliver", int64(q.MaxDeliver), 1}, {"--max-deliveries", int64(q.MaxDeliveries), 1},
		{"--max-ack-pending", int64(q.MaxAckPending), 0}, {"--max-alert-bytes", int64(q.MaxAlertBytes), 1},
		{"--journal-max-bytes", q.JournalMaxBytes, 1}, {"--stream-replicas", int64(q.Replicas), 1},
	} {
		if c.v < c.min {
			bad("%s must be at least %d, got %d", c.flag, c.min, c.v)
		}
	}
	for _, c := range []struct {
		flag string
		v    time.Duration
	}{
		{"--ack-wait", q.AckWait}, {"--retry-delay", q.RetryDelay}, {"--max-retry-delay", q.MaxRetryDelay},
		{"--max-retry-after", q.MaxRetryAfter}, {"--duplicate-window", q.DuplicateWindow}, {"--grace-period", q.GracePeriod},
		{"--journal-ttl", q.JournalTTL}, {"--max-held-back", q.MaxHeldBack},
	} {
		if c.v <= 0 {
			bad("%s must be a positive duration, got %s", c.flag, c.v)
		}
	}
	if q.MaxDeliveries > 0 && q.MaxDeliver > q.MaxDeliveries {
		bad("--max-deliver (%d) must not exceed --max-deliveries (%d)", q.MaxDeliver, q.MaxDeliveries)
	}
	g := actions.DefaultGuardSettings(s.maxInFlight)
	s.breaker.MaxOpenFor, s.breaker.SlowAfter, s.breaker.MaxCalls = max(g.MaxOpenFor, s.breaker.OpenFor), g.SlowAfter, g.MaxCalls
	s.queue.AlertsSubjects = nil
	for _, subj := range strings.Split(s.subjects, ",") {
		if subj = strings.TrimSpace(subj); subj != "" {
			s.queue.AlertsSubjects = append(s.queue.AlertsSubjects, subj)
		}
	}
	s.natsURL = strings.TrimSpace(s.natsURL)
	if err := queue.ValidateNames(s.queue); err != nil {
		errs = append(errs, err)
	}
	s.vendorEnv = secretReader(env)
	var err error
	s.natsAuth, err = natsAuth(env)
	errs = append(errs, err)
	s.warnings = settingWarnings(env)
	warnings, err := s.console.finish(s.httpAddr)
	errs = append(errs, err)
	s.warnings = append(s.warnings, warnings...)
	switch {
	case s.pprof && s.httpAddr == "":
		bad("--pprof serves on --http-addr, which is empty")
	case s.pprof && !loopbackAddr(s.httpAddr):
		s.warnings = append(s.warnings, fmt.Sprintf("--pprof on --http-addr %q, which is not a loopback address: anyone who reaches it can read the worker's memory profile and stall it with CPU profiles", s.httpAddr))
	}
	return errors.Join(errs...)
}

// settingWarnings are settings that work but are likely a mistake.
func settingWarnings(env environ) []string {
	var out []string
	names := []string{"NATS_NKEY_SEED", "NATS_NKEY", "NATS_TOKEN", "NATS_PASSWORD"}
	for _, v := range vendorList() {
		for _, d := range v.Vars {
			names = append(names, d.Name)
		}
	}
	for _, n := range names {
		if env.get(n) != "" && env.get(n+"_FILE") != "" {
			out = append(out, fmt.Sprintf("both %s and %s_FILE are set; %s is used", n, n, n))
		}
	}
	var methods []string
	for _, m := range []struct{ name, v string }{
		{"NATS_CREDS", env.get("NATS_CREDS")},
		{"NATS_NKEY_SEED", env.get("NATS_NKEY_SEED") + env.get("NATS_NKEY_SEED_FILE") + env.get("NATS_NKEY")},
		{"NATS_TOKEN", env.get("NATS_TOKEN") + env.get("NATS_TOKEN_FILE")},
		{"NATS_USER", env.get("NATS_USER")},
	} {
		if strings.TrimSpace(m.v) != "" {
			methods = append(methods, m.name)
		}
	}
	if len(methods) > 1 {
		out = append(out, fmt.Sprintf("several NATS authentication methods are set (%s); only %s is used", strings.Join(methods, ", "), methods[0]))
	}
	return out
}

// effective is what the worker runs with, for the start-up log line: no secrets.
func (s *settings) effective() map[string]any {
	q := s.queue
	nats := s.natsURL
	if nats == "" {
		nats = "embedded at " + s.natsListen
	}
	return map[string]any{
		"playbooks": s.playbooks, "nats": queue.RedactURLs(nats), "http_addr": s.httpAddr, "simulate": s.simulate,
		"max_in_flight": s.maxInFlight, "consumer": q.Consumer, "alerts_stream": q.AlertsStream,
		"max_deliver": q.MaxDeliver, "max_deliveries": q.MaxDeliveries, "ack_wait": q.AckWait.String(),
		"grace_period": q.GracePeriod.String(), "stream_replicas": q.Replicas,
		"breaker_failures": s.breaker.Failures, "breaker_open_for": s.breaker.OpenFor.String(),
		"http_tls": s.console.tls != nil, "console": s.console.enabled, "console_auth": s.console.authName(),
	}
}

// natsAuth reads the NATS_* credentials of docs/configuration.md, secrets also from their _FILE form.
func natsAuth(env environ) (queue.Auth, error) {
	secret := secretReader(env)
	var errs []error
	get := func(name string) string {
		v, err := secret(name)
		errs = append(errs, err)
		return v
	}
	a := queue.Auth{
		CredsFile: env.get("NATS_CREDS"),
		NKeySeed:  firstOf(get("NATS_NKEY_SEED"), get("NATS_NKEY")), // NATS_NKEY: the nats CLI's name
		Token:     get("NATS_TOKEN"),
		User:      env.get("NATS_USER"),
		Password:  get("NATS_PASSWORD"),
		CAFile:    env.get("NATS_CA"),
		CertFile:  env.get("NATS_CERT"),
		KeyFile:   env.get("NATS_KEY"),
	}
	return a, errors.Join(errs...)
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// secretReader returns a lookup that reads NAME, or else the file named by NAME_FILE, so that
// secrets can come from mounted files rather than the environment.
func secretReader(env environ) func(string) (string, error) {
	return func(name string) (string, error) {
		if v := env.get(name); v != "" {
			return v, nil
		}
		path := env.get(name + "_FILE")
		if path == "" {
			return "", nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("read %s_FILE: %w", name, err)
		}
		// The line end an editor adds is no part of the secret; spaces may be.
		return strings.TrimRight(string(b), "\r\n"), nil
	}
}

// mapEnv is an environ over a map, for the demo's fixed settings and for tests.
func mapEnv(m map[string]string) environ {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// parseBool takes what people write in environment files: true/false, 1/0, on/off, yes/no.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "on", "yes", "y":
		return true, nil
	case "off", "no", "n":
		return false, nil
	}
	return strconv.ParseBool(v)
}
