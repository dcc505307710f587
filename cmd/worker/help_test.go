package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var envNameRE = regexp.MustCompile(`\b(?:RIPOSTE|NATS|HEC|GZ|PVWA)_[A-Z_]+\b`)

// `worker run -h` and docs/configuration.md list the same variables: every setting, the NATS
// and vendor ones included, is in both.
func TestRunHelpAndConfigurationDocAgree(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if code := dispatch(context.Background(), []string{"run", "-h"}, mapEnv(nil), nil, io.Discard, &out); code != 0 {
		t.Fatalf("run -h exited %d", code)
	}
	help := out.String()
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	inHelp, inDoc := names(help), names(string(doc))
	for _, n := range inHelp {
		if !slices.Contains(inDoc, n) {
			t.Errorf("run -h lists %s, docs/configuration.md does not", n)
		}
	}
	for _, n := range inDoc {
		if !slices.Contains(inHelp, n) && !strings.HasSuffix(n, "_FILE") {
			t.Errorf("docs/configuration.md documents %s, run -h does not list it", n)
		}
	}
	for _, must := range []string{"NATS_URL", "NATS_NKEY_SEED", "HEC_ACCESS_KEY", "GZ_RATE_LIMIT", "PVWA_AUTH_METHOD", "-nats-url"} {
		if !strings.Contains(help, must) {
			t.Errorf("run -h lacks %s", must)
		}
	}
}

func names(text string) []string {
	var out []string
	for _, n := range envNameRE.FindAllString(text, -1) {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// A bad flag says so in a line and how to see the flags, not the whole usage.
func TestBadFlagIsOneLine(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	code := dispatch(context.Background(), []string{"run", "--max-in-fligth", "3"}, mapEnv(map[string]string{"RIPOSTE_ACK_WAIT": "soon"}), nil, io.Discard, &out)
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	got := out.String()
	for _, want := range []string{"flag provided but not defined: -max-in-fligth", `RIPOSTE_ACK_WAIT="soon"`, "run 'worker run -h'"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "-data-dir") {
		t.Errorf("a bad flag printed the whole usage:\n%s", got)
	}
}

// Every problem of a start-up comes out at once, before anything listens: flags, environment,
// names, vendor settings.
func TestRunReportsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	env := map[string]string{
		"RIPOSTE_PLAYBOOKS": shippedPlaybooks, "RIPOSTE_MAX_DELIVER": "-3", "RIPOSTE_CONSUMER": "blue.green",
		"RIPOSTE_LOG_LEVEL": "loud", "RIPOSTE_NATS_LISTEN": addr, "RIPOSTE_HTTP_ADDR": freeAddr(t),
		"HEC_REGION": "mars", "HEC_CLIENT_ID": "c", "HEC_ACCESS_KEY": "k", "GZ_API_KEY": "g",
	}
	var out bytes.Buffer
	if code := dispatch(context.Background(), []string{"run"}, mapEnv(env), nil, io.Discard, &out); code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"--max-deliver must be at least 1, got -3", `consumer name "blue.green"`, `log level "loud"`,
		`unknown HEC region "mars"`, "GZ_BASE_URL not set", "PVWA_BASE_URL, PVWA_USERNAME, PVWA_PASSWORD not set",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	// Nothing was started: the embedded server's port is free.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Errorf("the embedded server was started despite the problems: %v", err)
	} else {
		ln.Close()
	}
}

func TestSettingWarnings(t *testing.T) {
	t.Parallel()
	w := settingWarnings(mapEnv(map[string]string{
		"HEC_ACCESS_KEY": "a", "HEC_ACCESS_KEY_FILE": "/run/secrets/k", "NATS_TOKEN": "t", "NATS_USER": "u",
	}))
	joined := strings.Join(w, "\n")
	for _, want := range []string{"both HEC_ACCESS_KEY and HEC_ACCESS_KEY_FILE are set", "several NATS authentication methods are set (NATS_TOKEN, NATS_USER); only NATS_TOKEN is used"} {
		if !strings.Contains(joined, want) {
			t.Errorf("warnings %q lack %q", joined, want)
		}
	}
}
