// Package queue is riposte's JetStream layer: it creates the streams and the shared durable pull
// consumer, delivers alerts to a handler with bounded concurrency, publishes outcomes and
// dead letters, and turns the handler's verdict into ack, nak-with-delay or term.
package queue

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// Config names the streams and subjects and sets the delivery limits. Zero values take the
// defaults of DefaultConfig.
type Config struct {
	AlertsStream   string
	AlertsSubjects []string // what the alerts stream captures when the worker creates it
	OutcomesStream string
	OutcomesPrefix string // outcomes go to <prefix>.<playbook> and <prefix>.unmatched
	DLQStream      string
	DLQPrefix      string // dead letters go to <prefix>.<reason>
	Consumer       string // the shared durable consumer every replica binds to

	MaxInFlight   int // alerts one replica handles at once
	MaxAckPending int // the consumer's limit, shared by all replicas
	AckWait       time.Duration
	// MaxDeliver is how many deliveries may end in a vendor failure before the alert is
	// dead-lettered as exhausted. Deliveries that ended otherwise (a shutdown, a crashed
	// worker, an expired ack wait) do not count against it, only against MaxDeliveries.
	MaxDeliver int
	// MaxDeliveries caps every delivery of one alert, whatever ended it: the poison limit.
	// Deliveries handed back for a held-back vendor do not count.
	MaxDeliveries int
	// MaxHeldBack is how long an alert may wait for a vendor whose breaker holds it back.
	MaxHeldBack   time.Duration
	RetryDelay    time.Duration // nak delay after the first failed delivery; doubles each time
	MaxRetryDelay time.Duration
	// MaxRetryAfter caps how long a vendor's Retry-After may hold an alert back: a vendor asking
	// for a day must not park an alert for a day.
	MaxRetryAfter time.Duration
	// DuplicateWindow is how long JetStream remembers a Nats-Msg-Id on the streams the worker
	// creates: outcome de-duplication across redeliveries only works inside it.
	DuplicateWindow time.Duration
	MaxAlertBytes   int           // larger alerts are dead-lettered as too_large
	GracePeriod     time.Duration // how long shutdown waits for in-flight alerts

	ApprovalsStream string // approval requests (<prefix>.<playbook>) and decisions (<prefix>.decisions)
	ApprovalsPrefix string
	ApprovalsBucket string // key-value bucket of approval gates
	// ApprovalsSweep is how often each replica looks for gates whose time ran out (and decided
	// ones whose alert was not resumed): how late a timeout may be decided.
	ApprovalsSweep time.Duration

	JournalBucket string        // key-value bucket of completed steps
	JournalTTL    time.Duration // how long a completed step is remembered
	// JournalMaxBytes bounds the bucket, so step outputs cannot fill the disk; when it is
	// full, new records are refused (and logged) until old ones expire.
	JournalMaxBytes int64

	// Replicas is how many servers hold each stream and bucket the worker creates: 1 on a
	// single server, 3 on a cluster. Existing ones keep what the operator gave them.
	Replicas int
}

// DefaultConfig is the defaults docs/configuration.md lists.
func DefaultConfig() Config {
	return Config{
		AlertsStream:    "SOAR_ALERTS",
		AlertsSubjects:  []string{"soar.alerts.>"},
		OutcomesStream:  "SOAR_OUTCOMES",
		OutcomesPrefix:  "soar.outcomes",
		DLQStream:       "SOAR_DLQ",
		DLQPrefix:       "soar.dlq",
		Consumer:        "riposte",
		MaxInFlight:     64,
		AckWait:         30 * time.Second,
		MaxDeliver:      5,
		MaxDeliveries:   20,
		MaxHeldBack:     24 * time.Hour,
		RetryDelay:      10 * time.Second,
		MaxRetryDelay:   5 * time.Minute,
		MaxRetryAfter:   time.Hour,
		DuplicateWindow: time.Hour,
		MaxAlertBytes:   1 << 20,
		// With the publish timeout (10 s) and the drain, shutdown fits Kubernetes' default
		// 30 s termination grace and compose's stop_grace_period.
		GracePeriod:     15 * time.Second,
		JournalBucket:   "riposte_steps",
		ApprovalsStream: "SOAR_APPROVALS",
		ApprovalsPrefix: "soar.approvals",
		ApprovalsBucket: "riposte_approvals",
		ApprovalsSweep:  5 * time.Second,
		JournalTTL:      7 * 24 * time.Hour,
		JournalMaxBytes: 1 << 30,
		Replicas:        1,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setString := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	setString(&c.AlertsStream, d.AlertsStream)
	setString(&c.OutcomesStream, d.OutcomesStream)
	setString(&c.OutcomesPrefix, d.OutcomesPrefix)
	setString(&c.DLQStream, d.DLQStream)
	setString(&c.DLQPrefix, d.DLQPrefix)
	setString(&c.Consumer, d.Consumer)
	setString(&c.JournalBucket, d.JournalBucket)
	setString(&c.ApprovalsStream, d.ApprovalsStream)
	setString(&c.ApprovalsPrefix, d.ApprovalsPrefix)
	setString(&c.ApprovalsBucket, d.ApprovalsBucket)
	if c.ApprovalsSweep <= 0 {
		c.ApprovalsSweep = d.ApprovalsSweep
	}
	if len(c.AlertsSubjects) == 0 {
		c.AlertsSubjects = d.AlertsSubjects
	}
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setInt(&c.MaxInFlight, d.MaxInFlight)
	// Alerts waiting out a vendor's outage stay pending: there must be room for them and for
	// new alerts alike, or one vendor's backlog would stop deliveries for every other.
	setInt(&c.MaxAckPending, max(c.MaxInFlight*16, defaultMaxAckPending))
	setInt(&c.MaxDeliver, d.MaxDeliver)
	setInt(&c.MaxDeliveries, max(d.MaxDeliveries, c.MaxDeliver*4))
	setInt(&c.MaxAlertBytes, d.MaxAlertBytes)
	setInt(&c.Replicas, d.Replicas)
	if c.JournalMaxBytes <= 0 {
		c.JournalMaxBytes = d.JournalMaxBytes
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	setDur(&c.AckWait, d.AckWait)
	setDur(&c.RetryDelay, d.RetryDelay)
	setDur(&c.MaxRetryDelay, d.MaxRetryDelay)
	setDur(&c.MaxRetryAfter, d.MaxRetryAfter)
	setDur(&c.MaxHeldBack, d.MaxHeldBack)
	setDur(&c.DuplicateWindow, d.DuplicateWindow)
	setDur(&c.GracePeriod, d.GracePeriod)
	setDur(&c.JournalTTL, d.JournalTTL)
	return c
}

// Validate reports every unusable setting at once, before the server would refuse it with a
// less helpful message.
func (c Config) Validate() error {
	var problems []string
	for _, p := range []struct{ what, v string }{
		{"outcomes prefix", c.OutcomesPrefix}, {"dead-letter prefix", c.DLQPrefix}, {"approvals prefix", c.ApprovalsPrefix},
	} {
		if p.v == "" {
			continue
		}
		for _, tok := range strings.Split(p.v, ".") {
			if tok == "" || strings.ContainsAny(tok, "*>") || strings.IndexFunc(tok, isSpaceOrControl) >= 0 {
				problems = append(problems, fmt.Sprintf("%s %q is not a literal subject (tokens separated by single dots, no wildcards or spaces)", p.what, p.v))
				break
			}
		}
	}
	for _, p := range []struct{ what, v string }{
		{"alerts stream", c.AlertsStream}, {"outcomes stream", c.OutcomesStream},
		{"dead-letter stream", c.DLQStream}, {"consumer", c.Consumer}, {"approvals stream", c.ApprovalsStream},
	} {
		if strings.ContainsAny(p.v, `.*>/\`) || strings.IndexFunc(p.v, isSpaceOrControl) >= 0 {
			problems = append(problems, fmt.Sprintf("%s name %q may not contain '.', '*', '>', '/', '\\' or spaces", p.what, p.v))
		}
	}
	if c.MaxDeliveries > 0 && c.MaxDeliveries < c.MaxDeliver {
		problems = append(problems, fmt.Sprintf("max deliveries (%d) must be at least max deliver (%d)", c.MaxDeliveries, c.MaxDeliver))
	}
	if c.Replicas > 5 {
		problems = append(problems, fmt.Sprintf("stream replicas must be from 1 to 5, got %d", c.Replicas))
	}
	for _, b := range []struct{ what, v string }{{"journal", c.JournalBucket}, {"approvals", c.ApprovalsBucket}} {
		if b.v != "" && !bucketName.MatchString(b.v) {
			problems = append(problems, fmt.Sprintf("%s bucket name %q may hold only letters, digits, '-' and '_'", b.what, b.v))
		}
	}
	for _, p := range []struct{ what, a, b string }{
		{"outcomes and approvals prefixes", c.OutcomesPrefix, c.ApprovalsPrefix}, {"dead-letter and approvals prefixes", c.DLQPrefix, c.ApprovalsPrefix},
	} {
		if p.a != "" && p.a == p.b {
			problems = append(problems, fmt.Sprintf("the %s are both %q: their streams would capture the same subjects", p.what, p.a))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("queue configuration: %s", strings.Join(problems, "; "))
	}
	return nil
}

// defaultMaxAckPending leaves room for about half an hour of alerts at 10 a second parked
// behind an outage, beside the replicas' own in-flight work.
const defaultMaxAckPending = 20000

// bucketName is what JetStream accepts as a key-value bucket name.
var bucketName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func isSpaceOrControl(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }

// OutcomeSubject is where the outcome of a playbook run is published.
func (c Config) OutcomeSubject(playbook string) string { return c.OutcomesPrefix + "." + playbook }

// DLQSubject is where a dead letter with the given reason token goes.
func (c Config) DLQSubject(reason string) string { return c.DLQPrefix + "." + reason }

// retryDelay is the nak delay after the n-th failed delivery: exponential, capped. The worker
// times redelivery itself (rather than the consumer's BackOff list, which would also override
// AckWait) so that AckWait stays the crash-detection timeout and nothing else.
func (c Config) retryDelay(delivered uint64) time.Duration {
	d := c.RetryDelay
	for i := uint64(1); i < delivered && d < c.MaxRetryDelay; i++ {
		d *= 2
	}
	return min(d, c.MaxRetryDelay)
}
