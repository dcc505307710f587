// Command worker is riposte's SOAR response worker: it pulls alerts from NATS JetStream, runs the
// matching YAML playbooks against vendor APIs, and publishes one outcome per playbook run.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/riposte-soar/riposte/internal/playbook"
)

const usage = `usage: worker <command> [flags]

commands:
  run        run the worker (embedded JetStream server when NATS_URL is unset)
  demo       run the whole flow in one process against the fake vendors and check every outcome
  validate   check the playbooks (--playbooks, or the files and directories named) and exit
  plan       show what the playbooks would do with an alert, calling no vendor
  test       run playbook test files: alerts, stubbed vendor outputs, what must happen
  publish    publish an alert (a file, or - for stdin) to a subject
  watch      print outcomes and dead letters as they arrive
  outcomes   search the stored outcomes (by alert id, playbook, status, time), or follow them
  dlq        list, show, replay or delete dead letters
  approvals  list the approval gates waiting for a decision
  approve    approve a waiting gate (ID --by NAME [--reason TEXT])
  deny       deny a waiting gate (ID --by NAME --reason TEXT)
  actions    print the action catalogue (Markdown)
  version    print the version, commit and Go version
  healthcheck  exit 0 when the worker on this host answers ready (for container health checks)

"worker <command> -h" lists a command's flags and their environment variables.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], os.LookupEnv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// dispatch runs one subcommand and returns the process exit code.
func dispatch(ctx context.Context, args []string, env environ, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func(context.Context, []string, environ, io.Reader, io.Writer, io.Writer) error{
		"run":         cmdRun,
		"demo":        cmdDemo,
		"validate":    cmdValidate,
		"publish":     cmdPublish,
		"watch":       cmdWatch,
		"outcomes":    cmdOutcomes,
		"dlq":         cmdDLQ,
		"approvals":   cmdApprovals,
		"approve":     cmdApprove,
		"deny":        cmdDeny,
		"actions":     cmdActions,
		"plan":        cmdPlan,
		"test":        cmdTest,
		"version":     cmdVersion,
		"healthcheck": cmdHealthcheck,
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if name == "--version" || name == "-version" {
		fmt.Fprintln(stdout, currentBuild())
		return 0
	}
	cmd, ok := cmds[name]
	if !ok {
		fmt.Fprintf(stderr, "worker: unknown command %q\n\n%s", name, usage)
		return 2
	}
	if err := cmd(ctx, args[1:], env, stdin, stdout, stderr); err != nil {
		if err == errFlagsShown {
			return 2
		}
		if err == errHelpShown {
			return 0
		}
		if problems, ok := err.(playbook.Problems); ok {
			// One problem per line, each starting with file:line, for editors and CI to pick up.
			fmt.Fprintf(stderr, "worker %s: %d problem(s) in the playbooks:\n%v\n", name, len(problems), problems)
			return 1
		}
		fmt.Fprintf(stderr, "worker %s: %v\n", name, err)
		return 1
	}
	return 0
}

// newLogger builds the zap logger the flags ask for.
func newLogger(level, format string, out io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	var enc zapcore.Encoder
	switch strings.ToLower(format) {
	case "json":
		cfg := zap.NewProductionEncoderConfig()
		cfg.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(cfg)
	case "console", "text":
		cfg := zap.NewDevelopmentEncoderConfig()
		cfg.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewConsoleEncoder(cfg)
	default:
		return nil, fmt.Errorf("log format %q: use json or console", format)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(out), lvl)), nil
}
