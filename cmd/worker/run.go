package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/metrics"
	"github.com/riposte-soar/riposte/internal/queue"
)

var (
	errFlagsShown = errors.New("bad flags")
	errHelpShown  = errors.New("help shown")
)

// parseFlags parses args, mapping the flag package's outcomes to exit codes. A bad flag and
// bad environment values are reported together; -h prints every flag and variable, a mistake
// only a line saying how to see them.
func parseFlags(f *envFlags, args []string, stderr io.Writer) error {
	if stderr == nil {
		stderr = io.Discard
	}
	f.fs.SetOutput(stderr)
	full := f.fs.Usage
	if full == nil {
		full = func() { f.printUsage(stderr) }
	}
	help := false
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
			help = true
		}
		if a == "--" {
			break
		}
	}
	f.fs.Usage = func() {
		if help {
			full()
		}
	}
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelpShown
		}
		// The flag package has printed the problem; the environment's follow it.
		for _, e := range f.errs {
			fmt.Fprintln(stderr, e)
		}
		fmt.Fprintf(stderr, "run 'worker %s -h' for its flags and environment variables\n", f.fs.Name())
		return errFlagsShown
	}
	if f.fs.NArg() > 0 && !f.takesFile {
		f.errs = append(f.errs, fmt.Errorf("unexpected arguments: %v", f.fs.Args()))
	}
	return errors.Join(f.errs...)
}

func cmdRun(ctx context.Context, args []string, env environ, _ io.Reader, _, stderr io.Writer) error {
	// SIGHUP reloads the playbooks; caught from the start, it can never kill the worker.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var s settings
	f := newEnvFlags("run", env)
	f.envOnly = envOnlyVars()
	defineCommon(f, &s)
	defineWorker(f, &s)
	// Every problem, of flags, environment, files, names, playbooks and vendor settings, is
	// found before any listener or connection starts, and reported at once.
	problems := []error{}
	if err := parseFlags(f, args, stderr); err != nil {
		if err == errFlagsShown || err == errHelpShown {
			return err
		}
		problems = append(problems, err)
	}
	problems = append(problems, s.finish(env))
	log, err := newLogger(s.logLevel, s.logFormat, stderr)
	problems = append(problems, err)
	if log == nil {
		log = zap.NewNop()
	}
	reg, m := newMetrics()
	w, err := newWorker(&s, log, m)
	problems = append(problems, err)
	if err := errors.Join(problems...); err != nil {
		if w != nil {
			w.vendors.close()
		}
		return err
	}
	w.hup = hup
	defer func() { _ = log.Sync() }()
	b := currentBuild()
	log.Info("starting riposte worker", zap.String("version", b.Version), zap.String("commit", b.Commit),
		zap.String("go", b.GoVersion), zap.Any("settings", s.effective()))
	for _, warning := range s.warnings {
		log.Warn(warning)
	}

	url, auth := s.natsURL, s.natsAuth
	if url == "" {
		store := filepath.Join(s.dataDir, "jetstream")
		emb, err := queue.StartEmbedded(queue.EmbeddedConfig{Listen: s.natsListen, StoreDir: store})
		if err != nil {
			w.vendors.close()
			return err
		}
		defer emb.Shutdown()
		url, auth = emb.URL(), queue.Auth{}
		log.Info("NATS_URL is unset: started an embedded JetStream server; publish alerts to it",
			zap.String("url", url), zap.String("store", store))
	}
	// Health answers from the start, readiness once the worker pulls alerts.
	_, stopHTTP, err := serveHTTP(s.httpAddr, w.ready, w.reload, reg, log, w.httpExtras())
	if err != nil {
		// Responding to alerts matters more than being watched: a second replica started on
		// the same host with the default address keeps working, and says why it is not scraped.
		log.Error("health and metrics endpoints unavailable; set --http-addr (RIPOSTE_HTTP_ADDR) to a free address, or empty to disable",
			zap.String("addr", s.httpAddr), zap.Error(err))
		stopHTTP = func() {}
	}
	defer stopHTTP()

	nc, err := connectWhenUp(ctx, url, auth, log)
	if err != nil {
		w.vendors.close()
		if ctx.Err() != nil {
			return nil // stopped while NATS was not up yet
		}
		return err
	}
	if err := w.run(ctx, nc); err != nil {
		nc.Close()
		return err
	}
	log.Info("worker stopped")
	return drain(nc, 3*time.Second)
}

// connectWhenUp dials NATS, trying again every few seconds while the server is not up yet (a
// worker started beside its server in compose or Kubernetes), until ctx ends.
func connectWhenUp(ctx context.Context, url string, auth queue.Auth, log *zap.Logger) (*nats.Conn, error) {
	wait := 500 * time.Millisecond
	for {
		nc, err := queue.Connect(url, "riposte-worker", auth, log)
		if err == nil {
			return nc, nil
		}
		if !errors.Is(err, nats.ErrNoServers) {
			return nil, err // refused credentials, bad TLS: waiting will not help
		}
		log.Warn("NATS is not reachable yet; trying again", zap.Duration("in", wait), zap.Error(err))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// drain lets the connection deliver what it still holds (acks, naks) and closes it, waiting at
// most limit: Drain itself only starts it.
func drain(nc *nats.Conn, limit time.Duration) error {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return nil
	}
	select {
	case <-closed:
	case <-time.After(limit):
		nc.Close()
	}
	return nil
}

// newMetrics builds the registry /metrics serves: the worker's own collectors, and the Go
// runtime's and the process's. A registry of its own, not the global default, so that nothing
// a dependency registers behind our back ends up on the page, and tests can run many workers.
func newMetrics() (*prometheus.Registry, *metrics.Metrics) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg, metrics.New(reg)
}

// serveHTTP serves, on addr, /healthz (the process is up), /readyz (ready says why not, or nil)
// and /metrics (reg in the Prometheus text format), and what extra adds: HTTPS, the console.
// An empty addr serves nothing. bound is the address listened on, which differs from addr when
// addr asks for any free port.
func serveHTTP(addr string, ready, reload func() error, reg *prometheus.Registry, log *zap.Logger, extra httpExtras) (bound string, stop func(), err error) {
	if addr == "" {
		return "", func() {}, nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.HandleFunc("POST /-/reload", func(w http.ResponseWriter, _ *http.Request) {
		if err := reload(); err != nil {
			http.Error(w, "playbooks not reloaded; the last good set keeps serving:\n"+err.Error(), http.StatusUnprocessableEntity)
			return
		}
		_, _ = io.WriteString(w, "reloaded\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: zap.NewStdLog(log)}))
	if extra.console != nil {
		mux.Handle("/console", extra.console)
		mux.Handle("/console/", extra.console)
	}
	if extra.pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	// The server's own complaints (TLS handshakes a scanner broke off) are for debugging.
	errLog, _ := zap.NewStdLogAt(log, zap.DebugLevel)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, TLSConfig: extra.tls, ErrorLog: errLog}
	go func() {
		serve := func() error { return srv.Serve(ln) }
		if extra.tls != nil {
			serve = func() error { return srv.ServeTLS(ln, "", "") }
		}
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", zap.Error(err))
		}
	}()
	log.Info("serving health and metrics endpoints", zap.String("addr", ln.Addr().String()),
		zap.Bool("tls", extra.tls != nil), zap.Bool("console", extra.console != nil), zap.Bool("pprof", extra.pprof))
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
