package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// Set at link time by the Makefile and the Dockerfile:
//
//	go build -ldflags "-X main.version=1.2.0 -X main.commit=abc1234"
//
// Link-time constants in effect; nothing assigns them at run time.
var (
	version = ""
	commit  = ""
)

// buildInfo is what the binary says it is: `worker version`, the start-up log line, the
// riposte_build_info metric and the vendors' User-Agent.
type buildInfo struct {
	Version, Commit, GoVersion string
}

func currentBuild() buildInfo {
	b := buildInfo{Version: version, Commit: commit, GoVersion: runtime.Version()}
	if info, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && b.Commit == "" {
				b.Commit = s.Value
			}
		}
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	if len(b.Commit) > 12 {
		b.Commit = b.Commit[:12]
	}
	return b
}

func (b buildInfo) userAgent() string { return "riposte/" + b.Version }

func (b buildInfo) String() string {
	return fmt.Sprintf("riposte worker %s (commit %s, %s)", b.Version, b.Commit, b.GoVersion)
}

func cmdVersion(_ context.Context, args []string, env environ, _ io.Reader, stdout, stderr io.Writer) error {
	f := newEnvFlags("version", env)
	if err := parseFlags(f, args, stderr); err != nil {
		return err
	}
	fmt.Fprintln(stdout, currentBuild())
	return nil
}

// cmdHealthcheck asks the worker's own /readyz and exits 0 only when it is ready: the
// container image has no shell or curl, so the binary probes itself.
func cmdHealthcheck(ctx context.Context, args []string, env environ, _ io.Reader, stdout, stderr io.Writer) error {
	var addr, tlsCert string
	var timeout time.Duration
	f := newEnvFlags("healthcheck", env)
	f.StringOrEmpty(&addr, "http-addr", "RIPOSTE_HTTP_ADDR", ":9464", "the worker's health and metrics address")
	f.String(&tlsCert, "http-tls-cert", "RIPOSTE_HTTP_TLS_CERT", "", "the worker's HTTPS certificate: ask over HTTPS, trusting exactly that certificate")
	f.Duration(&timeout, "timeout", "", 3*time.Second, "how long to wait for the answer")
	if err := parseFlags(f, args, stderr); err != nil {
		return err
	}
	client, scheme, err := probeClient(tlsCert)
	if err != nil {
		return err
	}
	if addr == "" {
		return errors.New("the worker's endpoints are disabled (RIPOSTE_HTTP_ADDR is empty): nothing to ask")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--http-addr %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, scheme+"://"+net.JoinHostPort(host, port)+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready: %s", strings.TrimSpace(string(body)))
	}
	fmt.Fprintln(stdout, strings.TrimSpace(string(body)))
	return nil
}
