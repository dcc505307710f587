package riposte_test

// There is no Docker engine where these tests run, so they check what can be checked without
// one: that docker-compose.yml scales, sets only documented variables and builds from a
// Dockerfile that exists; that every file the Dockerfile copies exists and is not ignored; and
// that the Go image is new enough for go.mod.

import (
	"bufio"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// documentedEnv is the environment variables docs/configuration.md documents that the deploy
// files may set. Keep it in step with the docs.
var documentedEnv = func() []string {
	names := []string{
		// Worker configuration.
		"RIPOSTE_PLAYBOOKS", "RIPOSTE_DATA_DIR", "RIPOSTE_HTTP_ADDR", "RIPOSTE_MAX_IN_FLIGHT",
		"RIPOSTE_CONSUMER", "RIPOSTE_LOG_LEVEL", "RIPOSTE_LOG_FORMAT", "RIPOSTE_SIMULATE",
		// NATS.
		"NATS_URL", "NATS_CREDS", "NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_NKEY_SEED",
		"NATS_CA", "NATS_CERT", "NATS_KEY",
		// Check Point HEC.
		"HEC_BASE_URL", "HEC_REGION", "HEC_CLIENT_ID", "HEC_ACCESS_KEY",
		// Bitdefender GravityZone.
		"GZ_BASE_URL", "GZ_API_KEY",
		// CyberArk PVWA / PTA.
		"PVWA_BASE_URL", "PVWA_USERNAME", "PVWA_PASSWORD", "PVWA_AUTH_METHOD",
		// Client-side rate limits.
		"HEC_RATE_LIMIT", "GZ_RATE_LIMIT", "PVWA_RATE_LIMIT",
	}
	// "Each secret also as NAME_FILE holding a path."
	for _, secret := range []string{
		"NATS_PASSWORD", "NATS_TOKEN", "NATS_NKEY_SEED", "HEC_ACCESS_KEY", "GZ_API_KEY", "PVWA_PASSWORD",
	} {
		names = append(names, secret+"_FILE")
	}
	return names
}()

// vendorEnv must reach the worker container, so real vendors work by setting them in the shell.
var vendorEnv = []string{
	"HEC_BASE_URL", "HEC_REGION", "HEC_CLIENT_ID", "HEC_ACCESS_KEY",
	"GZ_BASE_URL", "GZ_API_KEY",
	"PVWA_BASE_URL", "PVWA_USERNAME", "PVWA_PASSWORD", "PVWA_AUTH_METHOD",
}

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image           string    `yaml:"image"`
	Profiles        []string  `yaml:"profiles"`
	Build           yaml.Node `yaml:"build"`
	Command         yaml.Node `yaml:"command"`
	ContainerName   string    `yaml:"container_name"`
	Hostname        string    `yaml:"hostname"`
	Ports           []any     `yaml:"ports"`
	Environment     yaml.Node `yaml:"environment"`
	DependsOn       yaml.Node `yaml:"depends_on"`
	Volumes         []any     `yaml:"volumes"`
	Restart         string    `yaml:"restart"`
	StopGracePeriod string    `yaml:"stop_grace_period"`
	Healthcheck     *struct {
		Test any `yaml:"test"`
	} `yaml:"healthcheck"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	raw, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatalf("read docker-compose.yml: %v", err)
	}
	var c composeFile
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("parse docker-compose.yml: %v", err)
	}
	return c
}

func service(t *testing.T, c composeFile, name string) composeService {
	t.Helper()
	s, ok := c.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml: no service %q", name)
	}
	return s
}

func TestComposeServices(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	// A plain "docker compose up" runs NATS and the worker; anything else (Prometheus, Grafana)
	// waits for its profile.
	var names []string
	for n, s := range c.Services {
		if len(s.Profiles) == 0 {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"nats", "worker"}) {
		t.Errorf("services without a profile = %v; want [nats worker]", names)
	}

	nats := service(t, c, "nats")
	if !strings.HasPrefix(nats.Image, "nats:") {
		t.Errorf("nats image = %q; want a nats: image", nats.Image)
	}
	var cmd []string
	if err := decodeStrings(&nats.Command, &cmd); err != nil {
		t.Errorf("nats command: %v", err)
	}
	if !slices.Contains(cmd, "-js") && !slices.Contains(cmd, "--jetstream") {
		t.Errorf("nats command %q does not enable JetStream", cmd)
	}
	if i := slices.Index(cmd, "-sd"); i < 0 || i+1 >= len(cmd) {
		t.Errorf("nats command %q sets no JetStream store directory (-sd)", cmd)
	} else if store := cmd[i+1]; !mountsNamedVolume(nats.Volumes, store, c.Volumes) {
		t.Errorf("nats store %q is not on a named volume declared under volumes:", store)
	}
	if nats.Healthcheck == nil {
		t.Errorf("nats has no healthcheck")
	}
}

func TestComposeWorkerScales(t *testing.T) {
	t.Parallel()
	w := service(t, loadCompose(t), "worker")
	if w.ContainerName != "" {
		t.Errorf("worker sets container_name %q; --scale needs compose to name replicas", w.ContainerName)
	}
	if w.Hostname != "" {
		t.Errorf("worker sets hostname %q; every replica would report the same worker", w.Hostname)
	}
	for _, p := range w.Ports {
		if host := fixedHostPort(p); host != "" {
			t.Errorf("worker port %v binds fixed host port %s; a second replica could not start", p, host)
		}
	}
	if w.Restart != "unless-stopped" {
		t.Errorf("worker restart = %q; want unless-stopped", w.Restart)
	}
	if w.StopGracePeriod == "" {
		t.Errorf("worker has no stop_grace_period; in-flight alerts need time to finish or nak")
	}
	var deps []string
	switch w.DependsOn.Kind {
	case yaml.SequenceNode:
		_ = w.DependsOn.Decode(&deps)
	case yaml.MappingNode:
		var m map[string]any
		_ = w.DependsOn.Decode(&m)
		for k := range m {
			deps = append(deps, k)
		}
	}
	if !slices.Contains(deps, "nats") {
		t.Errorf("worker depends_on = %v; want nats", deps)
	}
}

func TestComposeWorkerEnvironment(t *testing.T) {
	t.Parallel()
	w := service(t, loadCompose(t), "worker")
	env, err := environment(&w.Environment)
	if err != nil {
		t.Fatalf("worker environment: %v", err)
	}
	for name := range env {
		if !slices.Contains(documentedEnv, name) {
			t.Errorf("worker sets %s, which docs/configuration.md does not document", name)
		}
	}
	if got := env["NATS_URL"]; got == nil || !strings.HasPrefix(*got, "nats://nats:") {
		t.Errorf("worker NATS_URL = %v; want the nats service", deref(got))
	}
	if got := env["RIPOSTE_SIMULATE"]; got == nil || *got != "${RIPOSTE_SIMULATE:-true}" {
		t.Errorf("worker RIPOSTE_SIMULATE = %v; want ${RIPOSTE_SIMULATE:-true} (on unless the shell says otherwise)", deref(got))
	}
	if got := env["RIPOSTE_LOG_FORMAT"]; got != nil && *got != "json" {
		t.Errorf("worker RIPOSTE_LOG_FORMAT = %q; want json", *got)
	}
	for _, name := range vendorEnv {
		v, ok := env[name]
		if !ok {
			t.Errorf("worker does not pass %s through", name)
			continue
		}
		if v != nil && !strings.Contains(*v, "${"+name) {
			t.Errorf("worker %s = %q; want it passed through from the shell", name, *v)
		}
	}
}

func TestComposeWorkerPlaybooksMount(t *testing.T) {
	t.Parallel()
	w := service(t, loadCompose(t), "worker")
	env, err := environment(&w.Environment)
	if err != nil {
		t.Fatal(err)
	}
	target := "/playbooks"
	if v := env["RIPOSTE_PLAYBOOKS"]; v != nil {
		target = *v
	}
	found := false
	for _, v := range w.Volumes {
		s, ok := v.(string)
		if !ok {
			continue
		}
		parts := strings.Split(s, ":")
		if len(parts) >= 2 && parts[1] == target {
			found = true
			if len(parts) < 3 || !slices.Contains(strings.Split(parts[2], ","), "ro") {
				t.Errorf("playbooks mount %q is not read-only", s)
			}
			if path.Clean(parts[0]) != "playbooks" {
				t.Errorf("playbooks mount %q does not come from ./playbooks", s)
			}
		}
	}
	if !found {
		t.Errorf("worker mounts nothing at %s (RIPOSTE_PLAYBOOKS)", target)
	}
}

func TestComposeWorkerBuild(t *testing.T) {
	t.Parallel()
	w := service(t, loadCompose(t), "worker")
	context, dockerfile := ".", "Dockerfile"
	switch w.Build.Kind {
	case yaml.ScalarNode:
		context = w.Build.Value
	case yaml.MappingNode:
		var b struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
		}
		if err := w.Build.Decode(&b); err != nil {
			t.Fatalf("worker build: %v", err)
		}
		if b.Context != "" {
			context = b.Context
		}
		if b.Dockerfile != "" {
			dockerfile = b.Dockerfile
		}
	default:
		t.Fatalf("worker has no build:; it must be built from this repository")
	}
	p := filepath.Join(context, dockerfile)
	if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
		t.Errorf("worker build Dockerfile %s does not exist", p)
	}
}

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case
	args []string
}

func loadDockerfile(t *testing.T) []instruction {
	t.Helper()
	f, err := os.Open("Dockerfile")
	if err != nil {
		t.Fatalf("open Dockerfile: %v", err)
	}
	defer f.Close()
	var (
		out     []instruction
		pending strings.Builder
		start   int
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && pending.Len() == 0) {
			continue
		}
		if pending.Len() == 0 {
			start = n
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending.WriteString(cont + " ")
			continue
		}
		pending.WriteString(line)
		fields := strings.Fields(pending.String())
		pending.Reset()
		if len(fields) > 0 {
			out = append(out, instruction{line: start, cmd: strings.ToUpper(fields[0]), args: fields[1:]})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDockerfileCopySourcesExist(t *testing.T) {
	t.Parallel()
	ignore := dockerignore(t)
	copies := 0
	for _, in := range loadDockerfile(t) {
		if in.cmd != "COPY" && in.cmd != "ADD" {
			continue
		}
		var paths []string
		fromStage := false
		for _, a := range in.args {
			if strings.HasPrefix(a, "--from=") {
				fromStage = true
			}
			if !strings.HasPrefix(a, "--") {
				paths = append(paths, a)
			}
		}
		if fromStage {
			continue
		}
		if len(paths) > 0 && strings.HasPrefix(paths[0], "[") {
			t.Errorf("Dockerfile:%d: use the plain form of %s so this test can read it", in.line, in.cmd)
			continue
		}
		if len(paths) < 2 {
			t.Errorf("Dockerfile:%d: %s without source and destination", in.line, in.cmd)
			continue
		}
		for _, src := range paths[:len(paths)-1] {
			copies++
			if _, err := os.Stat(src); err != nil {
				t.Errorf("Dockerfile:%d: %s source %q does not exist in the repository", in.line, in.cmd, src)
			}
			if pat := ignoredBy(ignore, src); pat != "" {
				t.Errorf("Dockerfile:%d: %s source %q is excluded by .dockerignore pattern %q", in.line, in.cmd, src, pat)
			}
		}
	}
	if copies == 0 {
		t.Errorf("Dockerfile copies nothing from the build context")
	}
}

func TestDockerfileBuildTarget(t *testing.T) {
	t.Parallel()
	var targets []string
	for _, in := range loadDockerfile(t) {
		if in.cmd != "RUN" {
			continue
		}
		for i, a := range in.args {
			if a == "build" && i > 0 && in.args[i-1] == "go" {
				for _, b := range in.args[i+1:] {
					if strings.HasPrefix(b, "./") {
						targets = append(targets, b)
					}
				}
			}
		}
	}
	if !slices.Contains(targets, "./cmd/worker") {
		t.Fatalf("Dockerfile does not go build ./cmd/worker (targets %v)", targets)
	}
	st, err := os.Stat(filepath.Join("cmd", "worker"))
	if os.IsNotExist(err) {
		t.Skip("cmd/worker does not exist yet: the Dockerfile builds it, so it must exist before this passes")
	}
	if err != nil || !st.IsDir() {
		t.Fatalf("cmd/worker is not a directory: %v", err)
	}
	goFiles, _ := filepath.Glob(filepath.Join("cmd", "worker", "*.go"))
	if len(goFiles) == 0 {
		t.Errorf("cmd/worker has no Go files")
	}
}

// The runtime stage's ENV is the worker's configuration, so it uses documented names only.
func TestDockerfileEnvDocumented(t *testing.T) {
	t.Parallel()
	var runtime []instruction // the last stage
	for _, in := range loadDockerfile(t) {
		if in.cmd == "FROM" {
			runtime = runtime[:0]
		}
		runtime = append(runtime, in)
	}
	for _, in := range runtime {
		if in.cmd != "ENV" || len(in.args) == 0 {
			continue
		}
		var names []string
		if strings.Contains(in.args[0], "=") {
			for _, a := range in.args {
				if k, _, ok := strings.Cut(a, "="); ok {
					names = append(names, k)
				}
			}
		} else {
			names = append(names, in.args[0]) // ENV NAME value
		}
		for _, n := range names {
			if !slices.Contains(documentedEnv, n) {
				t.Errorf("Dockerfile:%d: ENV %s is not documented in docs/configuration.md", in.line, n)
			}
		}
	}
}

// The golang image sets GOTOOLCHAIN=local: a builder older than go.mod's go directive fails.
func TestDockerfileGoVersion(t *testing.T) {
	t.Parallel()
	want := goDirective(t)
	found := false
	for _, in := range loadDockerfile(t) {
		if in.cmd != "FROM" {
			continue
		}
		for _, a := range in.args {
			if strings.HasPrefix(a, "--") {
				continue
			}
			image, tag, ok := strings.Cut(a, ":")
			if !ok || (image != "golang" && image != "docker.io/library/golang") {
				break
			}
			found = true
			tag, _, _ = strings.Cut(tag, "@")
			tag, _, _ = strings.Cut(tag, "-") // 1.26-alpine, 1.26.8-bookworm
			have, err := parseVersion(tag)
			if err != nil {
				t.Errorf("Dockerfile:%d: golang tag %q is not a version (pin one): %v", in.line, tag, err)
				break
			}
			if !tagSatisfies(have, want) {
				t.Errorf("Dockerfile:%d: golang:%s is older than go.mod's go %s", in.line, tag, joinVersion(want))
			}
			break
		}
	}
	if !found {
		t.Errorf("Dockerfile has no golang: builder stage")
	}
}

func goDirective(t *testing.T) []int {
	t.Helper()
	raw, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "go "); ok {
			ver, err := parseVersion(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("go.mod go directive %q: %v", v, err)
			}
			return ver
		}
	}
	t.Fatal("go.mod has no go directive")
	return nil
}

func parseVersion(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ".") {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// tagSatisfies reports whether a golang image tag's version can build a module whose go
// directive is want. Only the components both name are compared: golang:1.26 floats to the
// newest 1.26.x patch, so it satisfies go 1.26.8; golang:1.26.3 does not.
func tagSatisfies(tag, want []int) bool {
	n := min(len(tag), len(want))
	return compareVersions(tag[:n], want[:n]) >= 0
}

func compareVersions(a, b []int) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return a[i] - b[i]
		}
	}
	return len(a) - len(b)
}

func joinVersion(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ".")
}

func TestParseAndCompareVersions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tag, gomod string
		ok         bool
	}{
		{"1.26", "1.26.8", true},
		{"1.26.8", "1.26.8", true},
		{"1.26.9", "1.26.8", true},
		{"1.27", "1.26.8", true},
		{"1.26.3", "1.26.8", false},
		{"1.25", "1.26.8", false},
		{"1", "1.26.8", true},
		{"1.26", "1.26", true},
		{"1.26.0", "1.26", true},
		{"1.25.9", "1.26", false},
	}
	for _, bad := range []string{"latest", "1.x", ""} {
		if _, err := parseVersion(bad); err == nil {
			t.Errorf("parseVersion(%q) succeeded; want an error", bad)
		}
	}
	for _, tt := range tests {
		have, err := parseVersion(tt.tag)
		if err != nil {
			t.Fatal(err)
		}
		want, err := parseVersion(tt.gomod)
		if err != nil {
			t.Fatal(err)
		}
		if ok := tagSatisfies(have, want); ok != tt.ok {
			t.Errorf("golang:%s for go %s: ok = %v; want %v", tt.tag, tt.gomod, ok, tt.ok)
		}
	}
}

// dockerignore returns the exclusion patterns of .dockerignore (negations dropped).
func dockerignore(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(".dockerignore")
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var pats []string
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "!") {
			continue
		}
		pats = append(pats, strings.Trim(path.Clean(line), "/"))
	}
	return pats
}

// ignoredBy returns the pattern that excludes src (or one of its parents), or "".
func ignoredBy(pats []string, src string) string {
	src = strings.Trim(path.Clean(filepath.ToSlash(src)), "/")
	if src == "." || src == "" {
		return ""
	}
	for _, pat := range pats {
		for p := src; p != "." && p != ""; p = path.Dir(p) {
			if ok, _ := path.Match(pat, p); ok {
				return pat
			}
		}
	}
	return ""
}

func TestDockerignoreExcludes(t *testing.T) {
	t.Parallel()
	pats := dockerignore(t)
	for _, p := range []string{".git", "data"} {
		if ignoredBy(pats, p) == "" {
			t.Errorf(".dockerignore does not exclude %s", p)
		}
	}
	for _, p := range []string{"go.mod", "go.sum", "cmd/worker/main.go", "internal/actions/spec.go", "playbooks"} {
		if pat := ignoredBy(pats, p); pat != "" {
			t.Errorf(".dockerignore excludes %s (pattern %q); the build needs it", p, pat)
		}
	}
}

// environment reads a service's environment in map or list form. A nil value means the name is
// passed through from the shell.
func environment(n *yaml.Node) (map[string]*string, error) {
	env := map[string]*string{}
	switch n.Kind {
	case 0:
		return env, nil
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Tag == "!!null" {
				env[k.Value] = nil
			} else {
				s := v.Value
				env[k.Value] = &s
			}
		}
	case yaml.SequenceNode:
		var list []string
		if err := n.Decode(&list); err != nil {
			return nil, err
		}
		for _, e := range list {
			if k, v, ok := strings.Cut(e, "="); ok {
				env[k] = &v
			} else {
				env[e] = nil
			}
		}
	}
	return env, nil
}

func decodeStrings(n *yaml.Node, out *[]string) error {
	if n.Kind == yaml.ScalarNode {
		*out = strings.Fields(n.Value)
		return nil
	}
	return n.Decode(out)
}

// fixedHostPort returns the fixed host port a ports entry publishes, or "" when compose picks
// one (or a range) for each replica.
func fixedHostPort(p any) string {
	switch v := p.(type) {
	case map[string]any:
		if pub, ok := v["published"]; ok {
			s := strings.TrimSpace(strings.Trim(toString(pub), `"`))
			if s != "" && !strings.Contains(s, "-") {
				return s
			}
		}
		return ""
	default:
		s, _, _ := strings.Cut(toString(v), "/")
		parts := strings.Split(s, ":")
		var host string
		switch len(parts) {
		case 2:
			host = parts[0]
		case 3:
			host = parts[1]
		}
		if host == "" || strings.Contains(host, "-") {
			return ""
		}
		return host
	}
}

func toString(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case int:
		return strconv.Itoa(t)
	default:
		return ""
	}
}

func mountsNamedVolume(mounts []any, target string, declared map[string]any) bool {
	for _, m := range mounts {
		s, ok := m.(string)
		if !ok {
			continue
		}
		parts := strings.Split(s, ":")
		if len(parts) < 2 || parts[1] != target {
			continue
		}
		if _, ok := declared[parts[0]]; ok {
			return true
		}
	}
	return false
}

func deref(s *string) string {
	if s == nil {
		return "<unset>"
	}
	return *s
}

func TestFixedHostPort(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   any
		want string
	}{
		{"9464", ""},
		{9464, ""},
		{"9464:9464", "9464"},
		{"127.0.0.1:9464:9464", "9464"},
		{"127.0.0.1::9464", ""},
		{"9000-9010:9464", ""},
		{"9464/tcp", ""},
		{"8080:9464/tcp", "8080"},
		{map[string]any{"target": 9464}, ""},
		{map[string]any{"target": 9464, "published": "8080"}, "8080"},
		{map[string]any{"target": 9464, "published": 8080}, "8080"},
	}
	for _, tt := range tests {
		if got := fixedHostPort(tt.in); got != tt.want {
			t.Errorf("fixedHostPort(%v) = %q; want %q", tt.in, got, tt.want)
		}
	}
}
