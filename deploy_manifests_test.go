package riposte_test

// The deployment files under deploy/ and the parts of docker-compose.yml that use them, checked
// against the repository without a cluster, a Docker engine or Grafana: the Kubernetes
// manifests' probes, ports, arguments, variables, volumes and budget; the compose secrets
// override and monitoring profile; and every metric the dashboard and the alert rules use is one
// docs/metrics.md lists, with its labels. Where promtool, kubectl or docker compose are
// installed, they check what they can too (promtool check and test the rules, check the
// Prometheus configurations; kubectl kustomize builds the manifests; docker compose config
// parses the compose files); elsewhere those subtests skip and say so.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const (
	kubeDir          = "deploy/kubernetes"
	composeSecrets   = "deploy/compose/docker-compose.secrets.yml"
	prometheusDir    = "deploy/prometheus"
	rulesFile        = "deploy/prometheus/riposte-rules.yml"
	rulesTestFile    = "deploy/prometheus/riposte-rules.test.yml"
	dashboardFile    = "deploy/grafana/riposte-dashboard.json"
	natsHelmValues   = "deploy/nats/values.yaml"
	grafanaDir       = "deploy/grafana"
	minShutdownGrace = 30 * time.Second // docs/configuration.md: shutdown ends within 30 s
)

// Prometheus configurations that scrape the workers, and the one the compose profile runs.
var prometheusConfigs = []string{"deploy/prometheus/prometheus.yml", "deploy/prometheus/prometheus-kubernetes.yml"}

// ---------------------------------------------------------------------------------------------
// What the docs and the code say.

// docText is docs/configuration.md and docs/actions.md (the generated vendor reference).
type docText struct{ config, actions string }

func loadDocText(t *testing.T) docText {
	t.Helper()
	var d docText
	for _, f := range []struct {
		path string
		into *string
	}{{"docs/configuration.md", &d.config}, {"docs/actions.md", &d.actions}} {
		raw, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatalf("read %s: %v", f.path, err)
		}
		*f.into = string(raw)
	}
	return d
}

// envDocumented reports whether docs/configuration.md documents name (in backticks), or name is
// the NAME_FILE form of a documented secret: configuration.md names some (HEC_ACCESS_KEY_FILE,
// NATS_PASSWORD_FILE, …) and the action catalogue it points to every vendor secret's.
func (d docText) envDocumented(name string) bool {
	if strings.Contains(d.config, "`"+name+"`") {
		return true
	}
	base, ok := strings.CutSuffix(name, "_FILE")
	return ok && strings.Contains(d.config, "`"+base+"`") && strings.Contains(d.actions, "`"+name+"`")
}

// httpAddrDefault is the binary's default RIPOSTE_HTTP_ADDR: the same in the docs, in `worker
// run` and in `worker healthcheck` (which the container health checks rely on).
func httpAddrDefault(t *testing.T, d docText) string {
	t.Helper()
	var documented string
	for _, line := range strings.Split(d.config, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) > 4 && strings.TrimSpace(cells[2]) == "`RIPOSTE_HTTP_ADDR`" {
			documented = strings.Trim(strings.TrimSpace(cells[3]), "`")
		}
	}
	if documented == "" {
		t.Fatal("docs/configuration.md: no table row for `RIPOSTE_HTTP_ADDR` with its default")
	}
	files, _ := filepath.Glob(filepath.Join("cmd", "worker", "*.go"))
	re := regexp.MustCompile(`"RIPOSTE_HTTP_ADDR",\s*"([^"]*)"`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(raw), -1) {
			if m[1] != documented {
				t.Errorf("%s: RIPOSTE_HTTP_ADDR defaults to %q; docs/configuration.md says %q", f, m[1], documented)
			}
		}
	}
	return documented
}

func addrPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("RIPOSTE_HTTP_ADDR %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("RIPOSTE_HTTP_ADDR %q: port %q is not a number", addr, p)
	}
	return n
}

// workerSubcommands are the keys of the command table in cmd/worker/main.go.
func workerSubcommands(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join("cmd", "worker", "main.go"), nil, 0)
	if err != nil {
		t.Fatalf("parse cmd/worker/main.go: %v", err)
	}
	var cmds []string
	ast.Inspect(f, func(n ast.Node) bool {
		cl, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		mt, ok := cl.Type.(*ast.MapType)
		if !ok {
			return true
		}
		if k, ok := mt.Key.(*ast.Ident); !ok || k.Name != "string" {
			return true
		}
		for _, e := range cl.Elts {
			kv, ok := e.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			lit, ok := kv.Key.(*ast.BasicLit)
			v, isIdent := kv.Value.(*ast.Ident)
			if !ok || lit.Kind != token.STRING || !isIdent || !strings.HasPrefix(v.Name, "cmd") {
				continue
			}
			if name, err := strconv.Unquote(lit.Value); err == nil {
				cmds = append(cmds, name)
			}
		}
		return true
	})
	if !slices.Contains(cmds, "run") {
		t.Fatalf("cmd/worker/main.go: found no command table with run in it (found %v)", cmds)
	}
	return cmds
}

// runtimeStage is the Dockerfile's last stage.
func runtimeStage(t *testing.T) []instruction {
	t.Helper()
	var stage []instruction
	for _, in := range loadDockerfile(t) {
		if in.cmd == "FROM" {
			stage = stage[:0]
		}
		stage = append(stage, in)
	}
	return stage
}

// execForm reads an exec-form (JSON) or shell-form argument list.
func execForm(args []string) []string {
	joined := strings.Join(args, " ")
	var out []string
	if strings.HasPrefix(joined, "[") && json.Unmarshal([]byte(joined), &out) == nil {
		return out
	}
	return strings.Fields(joined)
}

// imageEnv is the runtime stage's ENV.
func imageEnv(t *testing.T) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, in := range runtimeStage(t) {
		if in.cmd != "ENV" || len(in.args) == 0 {
			continue
		}
		if !strings.Contains(in.args[0], "=") {
			env[in.args[0]] = strings.Join(in.args[1:], " ")
			continue
		}
		for _, a := range in.args {
			if k, v, ok := strings.Cut(a, "="); ok {
				env[k] = strings.Trim(v, `"`)
			}
		}
	}
	return env
}

func imageEntrypoint(t *testing.T) []string {
	t.Helper()
	var ep []string
	for _, in := range runtimeStage(t) {
		if in.cmd == "ENTRYPOINT" {
			ep = execForm(in.args)
		}
	}
	if len(ep) == 0 {
		t.Fatal("Dockerfile: the runtime stage has no ENTRYPOINT")
	}
	return ep
}

// goModVersion is the version go.mod requires of module, e.g. [2 15 2].
func goModVersion(t *testing.T, module string) []int {
	t.Helper()
	raw, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(f) >= 2 && f[0] == module {
			v, _, _ := strings.Cut(strings.TrimPrefix(f[1], "v"), "-")
			ver, err := parseVersion(v)
			if err != nil {
				t.Fatalf("go.mod: %s %s: %v", module, f[1], err)
			}
			return ver
		}
	}
	t.Fatalf("go.mod does not require %s", module)
	return nil
}

// checkNATSImageTag fails unless tag (2.15-alpine, 2.15.2) is at least the nats-server the
// tests embed: only the components the tag names are compared, as a tag floats to its newest
// patch.
func checkNATSImageTag(t *testing.T, where, tag string) {
	t.Helper()
	want := goModVersion(t, "github.com/nats-io/nats-server/v2")
	v, _, _ := strings.Cut(tag, "@")
	v, _, _ = strings.Cut(v, "-")
	have, err := parseVersion(v)
	if err != nil {
		t.Errorf("%s: NATS image tag %q is not a version (pin one at least %s): %v", where, tag, joinVersion(want[:2]), err)
		return
	}
	if !tagSatisfies(have, want) {
		t.Errorf("%s: NATS image tag %q is older than the nats-server %s the tests embed (go.mod)", where, tag, joinVersion(want))
	}
}

// ---------------------------------------------------------------------------------------------
// docs/metrics.md

type metricDoc struct {
	typ    string
	labels map[string][]string // documented values, when the docs name them
	closed map[string]bool     // the documented values are all there are
}

func loadMetricDocs(t *testing.T) map[string]metricDoc {
	t.Helper()
	raw, err := os.ReadFile("docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]metricDoc{}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "| `riposte_") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		labels, closed := parseLabelCell(cells[3])
		out[name] = metricDoc{typ: strings.TrimSpace(cells[2]), labels: labels, closed: closed}
	}
	if len(out) == 0 {
		t.Fatal("docs/metrics.md: no metric table rows (| `riposte_…` | type | labels | what |)")
	}
	return out
}

var backticked = regexp.MustCompile("`([^`]*)`")

// parseLabelCell reads "`state` (`pending`, `ack_pending`), `vendor`": label names in backticks,
// each optionally followed by its values in parentheses. Values are closed when the parentheses
// hold nothing but them.
func parseLabelCell(cell string) (map[string][]string, map[string]bool) {
	labels, closed := map[string][]string{}, map[string]bool{}
	var last string
	var inner strings.Builder
	depth := 0
	for i := 0; i < len(cell); i++ {
		c := cell[i]
		switch {
		case c == '(':
			depth++
			if depth == 1 {
				inner.Reset()
				continue
			}
		case c == ')' && depth > 0:
			depth--
			if depth == 0 {
				if last != "" {
					s := inner.String()
					for _, m := range backticked.FindAllStringSubmatch(s, -1) {
						labels[last] = append(labels[last], m[1])
					}
					closed[last] = strings.Trim(backticked.ReplaceAllString(s, ""), " ,;") == ""
				}
				continue
			}
		case c == '`' && depth == 0:
			if j := strings.IndexByte(cell[i+1:], '`'); j >= 0 {
				last = cell[i+1 : i+1+j]
				labels[last] = nil
				i += j + 1
				continue
			}
		}
		if depth > 0 {
			inner.WriteByte(c)
		}
	}
	return labels, closed
}

var (
	metricName = regexp.MustCompile(`\briposte_[a-z_]+`)
	selector   = regexp.MustCompile(`\b(riposte_[a-z_]+)\s*\{([^}]*)\}`)
	matcher    = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)
	// Labels Prometheus or its service discovery add to every series.
	targetLabels = []string{"job", "instance", "namespace", "pod"}
)

// histogramBase maps a histogram's series (_bucket, _count, _sum) to its documented name.
func histogramBase(name string, docs map[string]metricDoc) string {
	for _, suf := range []string{"_bucket", "_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suf); ok && docs[base].typ == "histogram" {
			return base
		}
	}
	return name
}

// checkExprMetrics fails for every riposte_ metric expr uses that docs/metrics.md does not list,
// and every label a selector matches on that the metric does not have (or a value it never
// takes). It returns the documented names used.
func checkExprMetrics(t *testing.T, where, expr string, docs map[string]metricDoc) []string {
	t.Helper()
	var used []string
	for _, name := range metricName.FindAllString(expr, -1) {
		base := histogramBase(name, docs)
		if _, ok := docs[base]; !ok {
			t.Errorf("%s: %s is not in docs/metrics.md (expr %q)", where, name, expr)
			continue
		}
		used = append(used, base)
	}
	for _, sel := range selector.FindAllStringSubmatch(expr, -1) {
		series, base := sel[1], histogramBase(sel[1], docs)
		doc, ok := docs[base]
		if !ok {
			continue // reported above
		}
		for _, m := range matcher.FindAllStringSubmatch(sel[2], -1) {
			label, op, value := m[1], m[2], m[3]
			_, documented := doc.labels[label]
			switch {
			case slices.Contains(targetLabels, label), label == "le" && strings.HasSuffix(series, "_bucket"):
			case !documented:
				t.Errorf("%s: %s has no label %q in docs/metrics.md (expr %q)", where, base, label, expr)
			case op == "=" && doc.closed[label] && !strings.Contains(value, "$") && !slices.Contains(doc.labels[label], value):
				t.Errorf("%s: %s{%s=%q}: docs/metrics.md gives %s only the values %v", where, base, label, value, label, doc.labels[label])
			}
		}
	}
	return used
}

// ---------------------------------------------------------------------------------------------
// Kubernetes manifests

type kubeObject struct {
	file       string
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	node *yaml.Node
}

func (o kubeObject) String() string { return fmt.Sprintf("%s %s/%s", o.file, o.Kind, o.Metadata.Name) }

type kustomization struct {
	Namespace          string   `yaml:"namespace"`
	Resources          []string `yaml:"resources"`
	ConfigMapGenerator []struct {
		Name     string   `yaml:"name"`
		Files    []string `yaml:"files"`
		Literals []string `yaml:"literals"`
		Envs     []string `yaml:"envs"`
	} `yaml:"configMapGenerator"`
	SecretGenerator []any `yaml:"secretGenerator"`
	Images          []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
	} `yaml:"images"`
}

func loadKustomization(t *testing.T) kustomization {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(kubeDir, "kustomization.yaml"))
	if err != nil {
		t.Fatalf("read %s/kustomization.yaml: %v", kubeDir, err)
	}
	var k kustomization
	if err := yaml.Unmarshal(raw, &k); err != nil {
		t.Fatalf("parse %s/kustomization.yaml: %v", kubeDir, err)
	}
	return k
}

// decodeObjects reads every document of a (multi-document) YAML stream.
func decodeObjects(file string, r io.Reader) ([]kubeObject, error) {
	var out []kubeObject
	dec := yaml.NewDecoder(r)
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if len(n.Content) == 0 || n.Content[0].Tag == "!!null" {
			continue // an empty document
		}
		o := kubeObject{file: file, node: &n}
		if err := n.Decode(&o); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		out = append(out, o)
	}
}

// loadManifests parses every *.yaml and *.yml directly in deploy/kubernetes but the
// kustomization (playbooks/ holds the generator's files, which are not manifests).
func loadManifests(t *testing.T) []kubeObject {
	t.Helper()
	entries, err := os.ReadDir(kubeDir)
	if err != nil {
		t.Fatal(err)
	}
	var objs []kubeObject
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || name == "kustomization.yaml" || (!strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml")) {
			continue
		}
		f, err := os.Open(filepath.Join(kubeDir, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeObjects(name, f)
		f.Close()
		if err != nil {
			t.Fatalf("parse %v", err)
		}
		if len(got) == 0 {
			t.Errorf("%s/%s holds no manifest", kubeDir, name)
		}
		objs = append(objs, got...)
	}
	return objs
}

func objectsOf(objs []kubeObject, kind string) []kubeObject {
	var out []kubeObject
	for _, o := range objs {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func oneOf(t *testing.T, objs []kubeObject, kind string) kubeObject {
	t.Helper()
	got := objectsOf(objs, kind)
	if len(got) != 1 {
		t.Fatalf("%s: want one %s, found %d", kubeDir, kind, len(got))
	}
	return got[0]
}

func decodeInto(t *testing.T, o kubeObject, v any) {
	t.Helper()
	if err := o.node.Decode(v); err != nil {
		t.Fatalf("%v: %v", o, err)
	}
}

type kubeProbe struct {
	HTTPGet *struct {
		Path   string    `yaml:"path"`
		Port   yaml.Node `yaml:"port"`
		Scheme string    `yaml:"scheme"`
	} `yaml:"httpGet"`
}

type kubeContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom any    `yaml:"valueFrom"`
	} `yaml:"env"`
	EnvFrom []struct {
		Prefix       string `yaml:"prefix"`
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe *kubeProbe `yaml:"readinessProbe"`
	LivenessProbe  *kubeProbe `yaml:"livenessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type kubeKeyPath struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
}

type kubeDeployment struct {
	Spec struct {
		Replicas *int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds *int64 `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot *bool  `yaml:"runAsNonRoot"`
					RunAsUser    *int64 `yaml:"runAsUser"`
				} `yaml:"securityContext"`
				Containers []kubeContainer `yaml:"containers"`
				Volumes    []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name  string        `yaml:"name"`
						Items []kubeKeyPath `yaml:"items"`
					} `yaml:"configMap"`
					Secret *struct {
						SecretName string        `yaml:"secretName"`
						Items      []kubeKeyPath `yaml:"items"`
					} `yaml:"secret"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// kubeWorker is the Deployment and its one container, with the environment the container gets
// from its env and its envFrom ConfigMaps and Secrets.
type kubeWorker struct {
	obj       kubeObject
	dep       kubeDeployment
	c         kubeContainer
	env       map[string]string
	envSource map[string]string // where each name comes from, for messages
}

func loadKubeWorker(t *testing.T, objs []kubeObject) kubeWorker {
	t.Helper()
	w := kubeWorker{obj: oneOf(t, objs, "Deployment"), env: map[string]string{}, envSource: map[string]string{}}
	decodeInto(t, w.obj, &w.dep)
	cs := w.dep.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("%v: want one container, found %d", w.obj, len(cs))
	}
	w.c = cs[0]
	data := kubeData(t, objs)
	for _, ef := range w.c.EnvFrom {
		var ref string
		switch {
		case ef.ConfigMapRef != nil:
			ref = "ConfigMap/" + ef.ConfigMapRef.Name
		case ef.SecretRef != nil:
			ref = "Secret/" + ef.SecretRef.Name
		default:
			continue
		}
		d, ok := data[ref]
		if !ok {
			t.Errorf("%v: envFrom %s, which %s does not define", w.obj, ref, kubeDir)
		}
		for k, v := range d {
			w.env[ef.Prefix+k], w.envSource[ef.Prefix+k] = v, ref
		}
	}
	for _, e := range w.c.Env {
		w.env[e.Name], w.envSource[e.Name] = e.Value, "env"
	}
	return w
}

// kubeData is every ConfigMap's and Secret's keys and values, by "Kind/name"; generated
// ConfigMaps hold their files' contents.
func kubeData(t *testing.T, objs []kubeObject) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, o := range objs {
		if o.Kind != "ConfigMap" && o.Kind != "Secret" {
			continue
		}
		var v struct {
			Data       map[string]string `yaml:"data"`
			StringData map[string]string `yaml:"stringData"`
		}
		decodeInto(t, o, &v)
		d := map[string]string{}
		for k, val := range v.Data {
			d[k] = val
		}
		for k, val := range v.StringData {
			d[k] = val
		}
		out[o.Kind+"/"+o.Metadata.Name] = d
	}
	for _, g := range loadKustomization(t).ConfigMapGenerator {
		d := map[string]string{}
		for _, f := range g.Files {
			key, file := generatorFile(f)
			raw, err := os.ReadFile(filepath.Join(kubeDir, file))
			if err != nil {
				t.Errorf("kustomization.yaml: configMapGenerator %s: %v", g.Name, err)
				continue
			}
			d[key] = string(raw)
		}
		for _, l := range g.Literals {
			k, v, _ := strings.Cut(l, "=")
			d[k] = v
		}
		out["ConfigMap/"+g.Name] = d
	}
	return out
}

// generatorFile splits a configMapGenerator files entry, "path" or "key=path".
func generatorFile(entry string) (key, file string) {
	if k, f, ok := strings.Cut(entry, "="); ok {
		return k, f
	}
	return path.Base(entry), entry
}

// containerPort resolves a probe's or Service's port, a number or a container port's name.
func (w kubeWorker) containerPort(n yaml.Node) (int, bool) {
	if n.Tag == "!!int" {
		p, err := strconv.Atoi(n.Value)
		return p, err == nil
	}
	for _, p := range w.c.Ports {
		if p.Name == n.Value {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

// httpPort is the port the worker serves /healthz, /readyz and /metrics on: its
// RIPOSTE_HTTP_ADDR, else the image's, else the binary's default.
func (w kubeWorker) httpPort(t *testing.T, d docText) int {
	t.Helper()
	addr, ok := w.env["RIPOSTE_HTTP_ADDR"]
	if !ok {
		addr, ok = imageEnv(t)["RIPOSTE_HTTP_ADDR"]
	}
	if !ok {
		addr = httpAddrDefault(t, d)
	}
	if addr == "" {
		t.Fatalf("%v: RIPOSTE_HTTP_ADDR is empty, which disables the endpoints the probes need", w.obj)
	}
	return addrPort(t, addr)
}

// mountFor returns the volume mounted at the directory holding p (or at p itself).
func (w kubeWorker) mountFor(p string) (volume, mountPath string, ok bool) {
	best := ""
	for _, m := range w.c.VolumeMounts {
		if (p == m.MountPath || strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/")) && len(m.MountPath) > len(best) {
			best, volume = m.MountPath, m.Name
		}
	}
	return volume, best, best != ""
}

func TestManifestsParse(t *testing.T) {
	t.Parallel()
	objs := loadManifests(t)
	k := loadKustomization(t)
	var files []string
	for _, o := range objs {
		if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
			t.Errorf("%s: a document without apiVersion, kind or metadata.name", o.file)
		}
		if o.Metadata.Namespace != "" && o.Metadata.Namespace != k.Namespace {
			t.Errorf("%v: namespace %q; the kustomization sets %q", o, o.Metadata.Namespace, k.Namespace)
		}
		if !slices.Contains(files, o.file) {
			files = append(files, o.file)
		}
	}
	for _, kind := range []string{"Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "Secret"} {
		if len(objectsOf(objs, kind)) == 0 {
			t.Errorf("%s has no %s", kubeDir, kind)
		}
	}
	for _, f := range files {
		if !slices.Contains(k.Resources, f) {
			t.Errorf("kustomization.yaml does not list %s in resources: kubectl apply -k would leave it out", f)
		}
	}
	for _, r := range k.Resources {
		if !slices.Contains(files, r) {
			t.Errorf("kustomization.yaml lists %s, which is not a manifest in %s", r, kubeDir)
		}
	}
	if k.Namespace == "" {
		t.Errorf("kustomization.yaml sets no namespace")
	}
	for _, ns := range objectsOf(objs, "Namespace") {
		if ns.Metadata.Name != k.Namespace {
			t.Errorf("%v: the kustomization's namespace is %q", ns, k.Namespace)
		}
	}
}

func TestManifestDeployment(t *testing.T) {
	t.Parallel()
	w := loadKubeWorker(t, loadManifests(t))
	spec := w.dep.Spec
	if spec.Replicas == nil || *spec.Replicas != 2 {
		t.Errorf("%v: replicas = %v; want 2", w.obj, spec.Replicas)
	}
	if w.c.Image == "" {
		t.Errorf("%v: container %s has no image", w.obj, w.c.Name)
	}
	ep := imageEntrypoint(t)
	if len(w.c.Command) > 0 && !slices.Equal(w.c.Command, ep) {
		t.Errorf("%v: command %q replaces the image's entrypoint %q", w.obj, w.c.Command, ep)
	}
	cmds := workerSubcommands(t)
	if len(w.c.Args) == 0 || !slices.Contains(cmds, w.c.Args[0]) {
		t.Errorf("%v: args %q; want a worker subcommand first (%v)", w.obj, w.c.Args, cmds)
	} else if w.c.Args[0] != "run" {
		t.Errorf("%v: args %q; the worker is `worker run`", w.obj, w.c.Args)
	}
	pod := spec.Template.Spec
	if g := pod.TerminationGracePeriodSeconds; g == nil {
		t.Errorf("%v: terminationGracePeriodSeconds is not set; the worker's shutdown takes up to %v", w.obj, minShutdownGrace)
	} else if time.Duration(*g)*time.Second < minShutdownGrace {
		t.Errorf("%v: terminationGracePeriodSeconds = %d; the worker's shutdown takes up to %v", w.obj, *g, minShutdownGrace)
	}
	sc := w.c.SecurityContext
	if !isTrue(pod.SecurityContext.RunAsNonRoot) && !isTrue(sc.RunAsNonRoot) {
		t.Errorf("%v: runAsNonRoot is not set", w.obj)
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Errorf("%v: readOnlyRootFilesystem is not true", w.obj)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%v: allowPrivilegeEscalation is not false", w.obj)
	}
	if !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%v: capabilities do not drop ALL", w.obj)
	}
	for _, res := range []string{"cpu", "memory"} {
		if w.c.Resources.Requests[res] == "" {
			t.Errorf("%v: no %s request", w.obj, res)
		}
	}
	if w.c.Resources.Limits["memory"] == "" {
		t.Errorf("%v: no memory limit", w.obj)
	}
	if !subset(spec.Selector.MatchLabels, spec.Template.Metadata.Labels) || len(spec.Selector.MatchLabels) == 0 {
		t.Errorf("%v: selector %v does not select its pod template's labels %v", w.obj, spec.Selector.MatchLabels, spec.Template.Metadata.Labels)
	}
}

func TestManifestProbesAndPorts(t *testing.T) {
	t.Parallel()
	objs := loadManifests(t)
	w := loadKubeWorker(t, objs)
	port := w.httpPort(t, loadDocText(t))
	for _, p := range []struct {
		name  string
		probe *kubeProbe
		path  string
	}{{"readinessProbe", w.c.ReadinessProbe, "/readyz"}, {"livenessProbe", w.c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%v: no %s httpGet", w.obj, p.name)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path {
			t.Errorf("%v: %s path %q; want %s", w.obj, p.name, g.Path, p.path)
		}
		if got, ok := w.containerPort(g.Port); !ok || got != port {
			t.Errorf("%v: %s port %q is %d; the worker serves its endpoints on %d (RIPOSTE_HTTP_ADDR)", w.obj, p.name, g.Port.Value, got, port)
		}
		if g.Scheme != "" && g.Scheme != "HTTP" {
			t.Errorf("%v: %s scheme %s; the endpoints are plain HTTP", w.obj, p.name, g.Scheme)
		}
	}
	if got := w.dep.Spec.Template.Metadata.Annotations["prometheus.io/port"]; got != "" && got != strconv.Itoa(port) {
		t.Errorf("%v: prometheus.io/port %q; the metrics are on %d", w.obj, got, port)
	}
	if w.dep.Spec.Template.Metadata.Annotations["prometheus.io/scrape"] != "true" {
		t.Errorf("%v: pod template lacks prometheus.io/scrape: \"true\"", w.obj)
	}
	for _, o := range objectsOf(objs, "Service") {
		var svc struct {
			Spec struct {
				Selector map[string]string `yaml:"selector"`
				Ports    []struct {
					Name       string    `yaml:"name"`
					Port       int       `yaml:"port"`
					TargetPort yaml.Node `yaml:"targetPort"`
				} `yaml:"ports"`
			} `yaml:"spec"`
		}
		decodeInto(t, o, &svc)
		if len(svc.Spec.Selector) == 0 || !subset(svc.Spec.Selector, w.dep.Spec.Template.Metadata.Labels) {
			t.Errorf("%v: selector %v does not select the worker pods %v", o, svc.Spec.Selector, w.dep.Spec.Template.Metadata.Labels)
		}
		found := false
		for _, p := range svc.Spec.Ports {
			target := p.TargetPort
			if target.Kind == 0 {
				target = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(p.Port)}
			}
			if got, ok := w.containerPort(target); ok && got == port {
				found = true
			}
		}
		if !found {
			t.Errorf("%v: no port reaches the worker's metrics port %d", o, port)
		}
	}
}

func TestManifestEnvDocumented(t *testing.T) {
	t.Parallel()
	d := loadDocText(t)
	w := loadKubeWorker(t, loadManifests(t))
	if len(w.env) == 0 {
		t.Fatalf("%v: sets no environment", w.obj)
	}
	for name := range w.env {
		if !d.envDocumented(name) {
			t.Errorf("%v: %s (from %s) is not documented in docs/configuration.md", w.obj, name, w.envSource[name])
		}
	}
	for _, e := range w.c.Env {
		if e.ValueFrom != nil {
			t.Errorf("%v: %s uses valueFrom; give secrets as files (%s_FILE) so they stay out of the environment", w.obj, e.Name, e.Name)
		}
	}
}

func TestManifestSecretsAsFiles(t *testing.T) {
	t.Parallel()
	objs := loadManifests(t)
	w := loadKubeWorker(t, objs)
	data := kubeData(t, objs)
	volumes := map[string]string{} // volume name → Secret name
	items := map[string][]kubeKeyPath{}
	for _, v := range w.dep.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			volumes[v.Name], items[v.Name] = v.Secret.SecretName, v.Secret.Items
		}
	}
	files := 0
	for _, vendorSecret := range []string{"HEC_ACCESS_KEY", "GZ_API_KEY", "PVWA_PASSWORD"} {
		if _, ok := w.env[vendorSecret+"_FILE"]; !ok {
			t.Errorf("%v: %s_FILE is not set: vendor credentials come from the Secret as files", w.obj, vendorSecret)
		}
		if _, ok := w.env[vendorSecret]; ok {
			t.Errorf("%v: %s is set in the environment (from %s); mount it as a file", w.obj, vendorSecret, w.envSource[vendorSecret])
		}
	}
	for name, p := range w.env {
		if !strings.HasSuffix(name, "_FILE") {
			continue
		}
		files++
		vol, mountPath, ok := w.mountFor(p)
		secret, isSecret := volumes[vol]
		if !ok || !isSecret {
			t.Errorf("%v: %s=%s is not in a mounted Secret volume", w.obj, name, p)
			continue
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, mountPath), "/")
		key := rel
		if len(items[vol]) > 0 {
			key = ""
			for _, it := range items[vol] {
				if it.Path == rel {
					key = it.Key
				}
			}
		}
		if _, ok := data["Secret/"+secret][key]; key == "" || !ok {
			t.Errorf("%v: %s=%s: Secret %s has no key %q", w.obj, name, p, secret, rel)
		}
	}
	if files == 0 {
		t.Errorf("%v: no *_FILE variable", w.obj)
	}
}

// The Secret in the repository is a template: a filled-in value would be a committed credential.
func TestManifestSecretIsATemplate(t *testing.T) {
	t.Parallel()
	for _, o := range objectsOf(loadManifests(t), "Secret") {
		var s struct {
			Data       map[string]string `yaml:"data"`
			StringData map[string]string `yaml:"stringData"`
		}
		decodeInto(t, o, &s)
		if len(s.StringData) == 0 {
			t.Errorf("%v: no stringData keys; the template should name every key the worker reads", o)
		}
		for k, v := range s.Data {
			if v != "" {
				t.Errorf("%v: data.%s holds a value; the repository's Secret stays a template of empty placeholders", o, k)
			}
		}
		for k, v := range s.StringData {
			if v != "" {
				t.Errorf("%v: stringData.%s holds a value; the repository's Secret stays a template of empty placeholders", o, k)
			}
		}
	}
}

func TestManifestPlaybooks(t *testing.T) {
	t.Parallel()
	objs := loadManifests(t)
	w := loadKubeWorker(t, objs)
	dir, ok := w.env["RIPOSTE_PLAYBOOKS"]
	if !ok {
		t.Fatalf("%v: RIPOSTE_PLAYBOOKS is not set", w.obj)
	}
	vol, mountPath, ok := w.mountFor(dir)
	if !ok || mountPath != dir {
		t.Fatalf("%v: nothing is mounted at RIPOSTE_PLAYBOOKS=%s", w.obj, dir)
	}
	var cm string
	for _, v := range w.dep.Spec.Template.Spec.Volumes {
		if v.Name == vol && v.ConfigMap != nil {
			cm = v.ConfigMap.Name
		}
	}
	if cm == "" {
		t.Fatalf("%v: the volume %s at RIPOSTE_PLAYBOOKS is not a ConfigMap", w.obj, vol)
	}
	var files []string
	for _, g := range loadKustomization(t).ConfigMapGenerator {
		if g.Name == cm {
			files = g.Files
		}
	}
	if files == nil {
		t.Fatalf("kustomization.yaml: no configMapGenerator %s with the playbooks (a generated name changes with the contents, which rolls the Deployment)", cm)
	}
	// The shipped playbooks, identical: the repository's are validated by the rest of the suite.
	shipped := map[string]string{}
	err := filepath.WalkDir("playbooks", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		if ext := filepath.Ext(p); ext == ".yaml" || ext == ".yml" {
			shipped[filepath.Base(p)] = p
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, entry := range files {
		key, file := generatorFile(entry)
		seen[key] = true
		src, ok := shipped[key]
		if !ok {
			t.Errorf("kustomization.yaml: %s is not one of playbooks/", entry)
			continue
		}
		have, err1 := os.ReadFile(filepath.Join(kubeDir, file))
		want, err2 := os.ReadFile(src)
		if err := errors.Join(err1, err2); err != nil {
			t.Error(err)
			continue
		}
		if !bytes.Equal(have, want) {
			t.Errorf("%s/%s differs from %s: cp playbooks/*.yaml %s/playbooks/", kubeDir, file, src, kubeDir)
		}
	}
	for key, src := range shipped {
		if !seen[key] {
			t.Errorf("kustomization.yaml: the playbooks ConfigMap lacks %s: copy it to %s/playbooks/ and list it", src, kubeDir)
		}
	}
}

func TestManifestPodDisruptionBudget(t *testing.T) {
	t.Parallel()
	objs := loadManifests(t)
	w := loadKubeWorker(t, objs)
	pdbObj := oneOf(t, objs, "PodDisruptionBudget")
	var pdb struct {
		Spec struct {
			MinAvailable yaml.Node `yaml:"minAvailable"`
			Selector     struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
		} `yaml:"spec"`
	}
	decodeInto(t, pdbObj, &pdb)
	if min := pdb.Spec.MinAvailable; min.Tag != "!!int" || min.Value != "1" {
		t.Errorf("%v: minAvailable = %q; want 1", pdbObj, min.Value)
	}
	if r := w.dep.Spec.Replicas; r != nil && pdb.Spec.MinAvailable.Value == strconv.Itoa(*r) {
		t.Errorf("%v: minAvailable equals the replicas (%d): no node could ever be drained", pdbObj, *r)
	}
	sel := pdb.Spec.Selector.MatchLabels
	if len(sel) == 0 || !subset(sel, w.dep.Spec.Template.Metadata.Labels) {
		t.Errorf("%v: selector %v does not select the Deployment's pods %v", pdbObj, sel, w.dep.Spec.Template.Metadata.Labels)
	}
}

func TestManifestNATS(t *testing.T) {
	t.Parallel()
	w := loadKubeWorker(t, loadManifests(t))
	url := w.env["NATS_URL"]
	if !strings.HasPrefix(url, "nats://") && !strings.HasPrefix(url, "tls://") {
		t.Errorf("%v: NATS_URL %q; want the NATS cluster's Service (nats://…:4222)", w.obj, url)
	}
	replicas, err := strconv.Atoi(w.env["RIPOSTE_STREAM_REPLICAS"])
	if err != nil || replicas != 3 {
		t.Errorf("%v: RIPOSTE_STREAM_REPLICAS = %q; want 3 on the JetStream cluster", w.obj, w.env["RIPOSTE_STREAM_REPLICAS"])
	}
	raw, err := os.ReadFile(natsHelmValues)
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		Config struct {
			Cluster struct {
				Enabled  bool `yaml:"enabled"`
				Replicas int  `yaml:"replicas"`
			} `yaml:"cluster"`
			JetStream struct {
				Enabled bool `yaml:"enabled"`
			} `yaml:"jetstream"`
		} `yaml:"config"`
		Container struct {
			Image struct {
				Tag string `yaml:"tag"`
			} `yaml:"image"`
		} `yaml:"container"`
	}
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatalf("parse %s: %v", natsHelmValues, err)
	}
	if !values.Config.JetStream.Enabled {
		t.Errorf("%s: config.jetstream.enabled is not true", natsHelmValues)
	}
	if !values.Config.Cluster.Enabled || values.Config.Cluster.Replicas < replicas {
		t.Errorf("%s: a cluster of %d servers (enabled %v) cannot hold R%d streams", natsHelmValues,
			values.Config.Cluster.Replicas, values.Config.Cluster.Enabled, replicas)
	}
	checkNATSImageTag(t, natsHelmValues, values.Container.Image.Tag)
}

// kubectl kustomize builds the manifests offline: the generator, names and namespace as applied.
func TestManifestsKustomizeBuild(t *testing.T) {
	t.Parallel()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed: kustomize build not checked")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, kubectl, "kustomize", kubeDir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", kubeDir, err, stderr.String())
	}
	objs, err := decodeObjects("kustomize build", bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	k := loadKustomization(t)
	var generated string
	for _, o := range objs {
		if o.Kind != "Namespace" && o.Metadata.Namespace != k.Namespace {
			t.Errorf("built %s/%s is in namespace %q; want %q", o.Kind, o.Metadata.Name, o.Metadata.Namespace, k.Namespace)
		}
		if o.Kind == "ConfigMap" && strings.HasPrefix(o.Metadata.Name, "riposte-playbooks-") {
			generated = o.Metadata.Name
		}
	}
	if generated == "" {
		t.Fatalf("the build has no riposte-playbooks-<hash> ConfigMap")
	}
	if !bytes.Contains(out, []byte("name: "+generated+"\n")) || bytes.Count(out, []byte(generated)) < 2 {
		t.Errorf("the built Deployment does not mount %s", generated)
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------------------------
// docker-compose.yml: what deploy/ adds to it

type composeDoc struct {
	Services map[string]struct {
		Image       string    `yaml:"image"`
		Profiles    []string  `yaml:"profiles"`
		Command     yaml.Node `yaml:"command"`
		Environment yaml.Node `yaml:"environment"`
		Volumes     []any     `yaml:"volumes"`
		Secrets     []any     `yaml:"secrets"`
		Healthcheck *struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
		StopGracePeriod string `yaml:"stop_grace_period"`
	} `yaml:"services"`
	Secrets map[string]struct {
		File        string `yaml:"file"`
		Environment string `yaml:"environment"`
	} `yaml:"secrets"`
}

func loadComposeDoc(t *testing.T, file string) composeDoc {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("read %s: %v", file, err)
	}
	var c composeDoc
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	return c
}

// composeWorkerPort is the port the compose worker serves its endpoints on.
func composeWorkerPort(t *testing.T, c composeDoc) int {
	t.Helper()
	w := c.Services["worker"]
	env, err := environment(&w.Environment)
	if err != nil {
		t.Fatal(err)
	}
	if v := env["RIPOSTE_HTTP_ADDR"]; v != nil {
		return addrPort(t, *v)
	}
	if v, ok := imageEnv(t)["RIPOSTE_HTTP_ADDR"]; ok {
		return addrPort(t, v)
	}
	return addrPort(t, httpAddrDefault(t, loadDocText(t)))
}

// bindSources are a service's bind-mounted host paths, cleaned ("deploy/prometheus").
func bindSources(volumes []any) []string {
	var out []string
	for _, v := range volumes {
		switch m := v.(type) {
		case string:
			if src, _, ok := strings.Cut(m, ":"); ok && (strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/")) {
				out = append(out, path.Clean(src))
			}
		case map[string]any:
			if m["type"] == "bind" {
				out = append(out, path.Clean(fmt.Sprint(m["source"])))
			}
		}
	}
	return out
}

func TestComposeNATSImageNewEnough(t *testing.T) {
	t.Parallel()
	image := loadComposeDoc(t, "docker-compose.yml").Services["nats"].Image
	_, tag, ok := strings.Cut(image, ":")
	if !ok {
		t.Fatalf("docker-compose.yml: nats image %q has no tag", image)
	}
	checkNATSImageTag(t, "docker-compose.yml", tag)
}

func TestComposeWorkerHealthcheckAndShutdown(t *testing.T) {
	t.Parallel()
	c := loadComposeDoc(t, "docker-compose.yml")
	w := c.Services["worker"]
	cmds := workerSubcommands(t)
	ep := imageEntrypoint(t)
	if w.Healthcheck == nil || len(w.Healthcheck.Test) < 3 {
		t.Errorf("docker-compose.yml: worker healthcheck %v; want [CMD, %s, healthcheck]", w.Healthcheck, ep[0])
	} else if test := w.Healthcheck.Test; test[0] != "CMD" || test[1] != ep[0] || test[2] != "healthcheck" || !slices.Contains(cmds, test[2]) {
		t.Errorf("docker-compose.yml: worker healthcheck %q; want [CMD, %s, healthcheck] (the image has no shell or curl)", test, ep[0])
	}
	var command []string
	if err := decodeStrings(&w.Command, &command); err == nil && len(command) > 0 && !slices.Contains(cmds, command[0]) {
		t.Errorf("docker-compose.yml: worker command %q is not a worker subcommand (%v)", command, cmds)
	}
	if d, err := time.ParseDuration(w.StopGracePeriod); err != nil || d < minShutdownGrace {
		t.Errorf("docker-compose.yml: worker stop_grace_period %q; the worker's shutdown takes up to %v", w.StopGracePeriod, minShutdownGrace)
	}
	// The image's own health check and default command, too.
	for _, in := range runtimeStage(t) {
		switch in.cmd {
		case "HEALTHCHECK":
			i := slices.Index(in.args, "CMD")
			if i < 0 {
				t.Errorf("Dockerfile:%d: HEALTHCHECK without CMD", in.line)
				continue
			}
			hc := execForm(in.args[i+1:])
			if len(hc) < 2 || hc[0] != ep[0] || !slices.Contains(cmds, hc[1]) {
				t.Errorf("Dockerfile:%d: HEALTHCHECK %q is not %s <subcommand>", in.line, hc, ep[0])
			}
		case "CMD":
			if c := execForm(in.args); len(c) == 0 || !slices.Contains(cmds, c[0]) {
				t.Errorf("Dockerfile:%d: CMD %q is not a worker subcommand (%v)", in.line, c, cmds)
			}
		}
	}
}

// The base file starts without secret files; the override adds them as compose secrets.
func TestComposeSecretsOverride(t *testing.T) {
	t.Parallel()
	d := loadDocText(t)
	base := loadComposeDoc(t, "docker-compose.yml")
	if len(base.Secrets) > 0 || len(base.Services["worker"].Secrets) > 0 {
		t.Errorf("docker-compose.yml declares secrets: docker compose up would fail without the files; they belong in %s", composeSecrets)
	}
	o := loadComposeDoc(t, composeSecrets)
	for name := range o.Services {
		if _, ok := base.Services[name]; !ok {
			t.Errorf("%s adds service %s; it only overrides the worker", composeSecrets, name)
		}
	}
	w, ok := o.Services["worker"]
	if !ok {
		t.Fatalf("%s does not override the worker", composeSecrets)
	}
	targets := map[string]string{} // target path → secret
	for _, s := range w.Secrets {
		var source, target string
		switch v := s.(type) {
		case string:
			source = v
		case map[string]any:
			source, _ = v["source"].(string)
			target, _ = v["target"].(string)
		}
		if target == "" {
			target = source
		}
		if !strings.HasPrefix(target, "/") {
			target = "/run/secrets/" + target
		}
		targets[target] = source
		decl, ok := o.Secrets[source]
		if !ok {
			t.Errorf("%s: the worker uses secret %s, which is not declared", composeSecrets, source)
			continue
		}
		if decl.File == "" || !strings.HasPrefix(path.Clean(decl.File), "secrets/") {
			t.Errorf("%s: secret %s file %q; want a file under ./secrets/ (relative to the repository's root, the first compose file's directory)", composeSecrets, source, decl.File)
		}
	}
	env, err := environment(&w.Environment)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range env {
		if !d.envDocumented(name) {
			t.Errorf("%s: worker sets %s, which docs/configuration.md does not document", composeSecrets, name)
		}
		if strings.HasSuffix(name, "_FILE") && (v == nil || targets[*v] == "") {
			t.Errorf("%s: %s = %v is not where one of the worker's secrets is mounted (%v)", composeSecrets, name, deref(v), targets)
		}
	}
	for _, secret := range []string{"HEC_ACCESS_KEY", "GZ_API_KEY", "PVWA_PASSWORD"} {
		if _, ok := env[secret+"_FILE"]; !ok {
			t.Errorf("%s: the worker gets no %s_FILE", composeSecrets, secret)
		}
	}
	if v := env["RIPOSTE_SIMULATE"]; v == nil || *v != "${RIPOSTE_SIMULATE:-false}" {
		t.Errorf("%s: RIPOSTE_SIMULATE = %v; want ${RIPOSTE_SIMULATE:-false}: the secrets are there to call the vendors", composeSecrets, deref(v))
	}
	raw, err := os.ReadFile(".gitignore")
	if err != nil {
		t.Fatal(err)
	}
	ignored := false
	for _, line := range strings.Split(string(raw), "\n") {
		if p := strings.Trim(strings.TrimSpace(line), "/"); p == "secrets" {
			ignored = true
		}
	}
	if !ignored {
		t.Errorf(".gitignore does not ignore secrets/, where the compose secrets live")
	}
}

func TestComposeMonitoringProfile(t *testing.T) {
	t.Parallel()
	c := loadComposeDoc(t, "docker-compose.yml")
	prom, ok := c.Services["prometheus"]
	if !ok {
		t.Fatal("docker-compose.yml has no prometheus service")
	}
	if !slices.Contains(prom.Profiles, "monitoring") {
		t.Errorf("docker-compose.yml: prometheus profiles %v; want monitoring, so a plain up leaves it out", prom.Profiles)
	}
	if !slices.Contains(bindSources(prom.Volumes), prometheusDir) {
		t.Errorf("docker-compose.yml: prometheus does not mount ./%s", prometheusDir)
	}
	if g, ok := c.Services["grafana"]; ok {
		if !slices.Contains(g.Profiles, "monitoring") {
			t.Errorf("docker-compose.yml: grafana profiles %v; want monitoring", g.Profiles)
		}
		if !slices.Contains(bindSources(g.Volumes), grafanaDir) {
			t.Errorf("docker-compose.yml: grafana does not mount ./%s", grafanaDir)
		}
	}
	cfg := loadPrometheusConfig(t, prometheusConfigs[0])
	port := composeWorkerPort(t, c)
	found := false
	for _, sc := range cfg.ScrapeConfigs {
		for _, dns := range sc.DNSSDConfigs {
			if slices.Contains(dns.Names, "worker") {
				found = true
				if dns.Port != port {
					t.Errorf("%s: job %s scrapes worker on port %d; the worker serves metrics on %d", prometheusConfigs[0], sc.JobName, dns.Port, port)
				}
				if dns.Type != "" && dns.Type != "A" {
					t.Errorf("%s: job %s: DNS type %s; compose answers A records, one per replica", prometheusConfigs[0], sc.JobName, dns.Type)
				}
			}
		}
	}
	if !found {
		t.Errorf("%s: no dns_sd_configs job for the compose service worker", prometheusConfigs[0])
	}
}

// docker compose config parses and merges the files as compose does. It needs no engine.
func TestComposeConfigValid(t *testing.T) {
	t.Parallel()
	docker, err := exec.LookPath("docker")
	if err == nil {
		err = exec.Command(docker, "compose", "version").Run()
	}
	if err != nil {
		t.Skip("docker compose is not installed: the compose files are checked by the other tests only")
	}
	for _, args := range [][]string{
		{"compose", "config", "-q"},
		{"compose", "--profile", "monitoring", "config", "-q"},
		{"compose", "-f", "docker-compose.yml", "-f", composeSecrets, "config", "-q"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, docker, args...).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Prometheus and Grafana

type prometheusConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName      string `yaml:"job_name"`
		DNSSDConfigs []struct {
			Names []string `yaml:"names"`
			Type  string   `yaml:"type"`
			Port  int      `yaml:"port"`
		} `yaml:"dns_sd_configs"`
	} `yaml:"scrape_configs"`
}

func loadPrometheusConfig(t *testing.T, file string) prometheusConfig {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var c prometheusConfig
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	return c
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadRules(t *testing.T) []alertRule {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string      `yaml:"name"`
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("parse %s: %v", rulesFile, err)
	}
	var rules []alertRule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s has no rules", rulesFile)
	}
	return rules
}

func TestRulesUseDocumentedMetrics(t *testing.T) {
	t.Parallel()
	docs := loadMetricDocs(t)
	seen := map[string]bool{}
	var used []string
	jobRe := regexp.MustCompile(`\bjob\s*=\s*"([^"]*)"`)
	var jobs []string
	for _, r := range loadRules(t) {
		where := rulesFile + ": " + r.Alert
		if r.Alert == "" {
			t.Errorf("%s: a rule without alert (record %q): this file holds alerts", rulesFile, r.Record)
			continue
		}
		if seen[r.Alert] {
			t.Errorf("%s: alert %s twice", rulesFile, r.Alert)
		}
		seen[r.Alert] = true
		if strings.TrimSpace(r.Expr) == "" {
			t.Errorf("%s: no expr", where)
		}
		if r.For != "" {
			if _, err := time.ParseDuration(r.For); err != nil {
				t.Errorf("%s: for %q: %v", where, r.For, err)
			}
		}
		if s := r.Labels["severity"]; s != "info" && s != "warning" && s != "critical" {
			t.Errorf("%s: severity %q; want info, warning or critical", where, s)
		}
		for _, a := range []string{"summary", "description"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: no %s annotation", where, a)
			}
		}
		used = append(used, checkExprMetrics(t, where, r.Expr, docs)...)
		for _, m := range jobRe.FindAllStringSubmatch(r.Expr, -1) {
			jobs = append(jobs, m[1])
		}
	}
	// What docs/metrics.md says to watch.
	for _, m := range []string{"riposte_vendor_request_duration_seconds", "riposte_vendor_breaker_state",
		"riposte_dead_letters_total", "riposte_consumer_alerts", "riposte_nats_connected"} {
		if !slices.Contains(used, m) {
			t.Errorf("%s: no alert on %s", rulesFile, m)
		}
	}
	// The rules' job matchers name the job every scrape configuration here defines.
	for _, cfgFile := range prometheusConfigs {
		cfg := loadPrometheusConfig(t, cfgFile)
		var names []string
		for _, sc := range cfg.ScrapeConfigs {
			names = append(names, sc.JobName)
		}
		for _, j := range jobs {
			if !slices.Contains(names, j) {
				t.Errorf("%s: rules match job=%q, which %s does not scrape (jobs %v)", rulesFile, j, cfgFile, names)
			}
		}
		loaded := false
		for _, rf := range cfg.RuleFiles {
			matches, _ := filepath.Glob(filepath.Join(filepath.Dir(cfgFile), rf))
			if len(matches) == 0 {
				t.Errorf("%s: rule_files %q matches no file next to it", cfgFile, rf)
			}
			for _, m := range matches {
				loaded = loaded || filepath.Clean(m) == filepath.Clean(rulesFile)
			}
		}
		if !loaded {
			t.Errorf("%s does not load %s", cfgFile, rulesFile)
		}
	}
}

// promtool, where installed (Debian's prometheus package), checks what Prometheus would load
// and runs the rules' unit tests.
func TestRulesPromtool(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (.ci/run installs Debian's prometheus package): rules and configurations not checked by it")
	}
	run := func(t *testing.T, args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, promtool, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	t.Run("check rules", func(t *testing.T) {
		t.Parallel()
		run(t, "check", "rules", rulesFile)
	})
	t.Run("test rules", func(t *testing.T) {
		t.Parallel()
		run(t, "test", "rules", rulesTestFile)
	})
	for _, cfg := range prometheusConfigs {
		t.Run("check config "+filepath.Base(cfg), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, promtool, "check", "config", cfg).CombinedOutput()
			if err != nil && bytes.Contains(out, []byte("field kubernetes_sd_configs not found")) {
				t.Skipf("this promtool was built without Kubernetes service discovery (Debian's is): %s not checked", cfg)
			}
			if err != nil {
				t.Fatalf("promtool check config %s: %v\n%s", cfg, err, out)
			}
		})
	}
}

type dashPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr       string `json:"expr"`
		RefID      string `json:"refId"`
		Datasource *struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"`
}

func TestDashboardUsesDocumentedMetrics(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name       string          `json:"name"`
				Type       string          `json:"type"`
				Query      json.RawMessage `json:"query"`
				Definition string          `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
		Panels []dashPanel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("parse %s: %v", dashboardFile, err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Errorf("%s: no title or uid", dashboardFile)
	}
	docs := loadMetricDocs(t)
	var used []string
	dsVar := ""
	for _, v := range dash.Templating.List {
		var q string
		if json.Unmarshal(v.Query, &q) != nil {
			var obj struct {
				Query string `json:"query"`
			}
			_ = json.Unmarshal(v.Query, &obj)
			q = obj.Query
		}
		if v.Type == "datasource" {
			if q != "prometheus" {
				t.Errorf("%s: data source variable %s is of type %q; want prometheus", dashboardFile, v.Name, q)
			}
			dsVar = v.Name
			continue
		}
		used = append(used, checkExprMetrics(t, dashboardFile+": variable "+v.Name, q+" "+v.Definition, docs)...)
	}
	if dsVar == "" {
		t.Fatalf("%s: no data source variable", dashboardFile)
	}
	wantDS := func(ds *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	}) bool {
		return ds != nil && (ds.UID == "${"+dsVar+"}" || ds.UID == "$"+dsVar)
	}
	ids := map[int]string{}
	var walk func(ps []dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			where := fmt.Sprintf("%s: panel %q", dashboardFile, p.Title)
			if prev, dup := ids[p.ID]; dup {
				t.Errorf("%s: id %d, as panel %q", where, p.ID, prev)
			}
			ids[p.ID] = p.Title
			if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
				t.Errorf("%s: no gridPos", where)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if !wantDS(p.Datasource) {
				t.Errorf("%s: data source %v; want ${%s}", where, p.Datasource, dsVar)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no queries", where)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("%s: query %s is empty", where, tg.RefID)
				}
				if tg.Datasource != nil && !wantDS(tg.Datasource) {
					t.Errorf("%s: query %s data source %v; want ${%s}", where, tg.RefID, tg.Datasource, dsVar)
				}
				used = append(used, checkExprMetrics(t, where, tg.Expr, docs)...)
			}
		}
	}
	walk(dash.Panels)
	for _, m := range []string{
		"riposte_alerts_received_total", "riposte_alerts_finished_total", "riposte_outcomes_total",
		"riposte_dead_letters_total", "riposte_step_runs_total", "riposte_action_attempts_total",
		"riposte_vendor_request_duration_seconds", "riposte_vendor_breaker_state", "riposte_consumer_alerts",
		"riposte_nats_connected", "riposte_build_info", "riposte_alerts_in_flight",
	} {
		if !slices.Contains(used, m) {
			t.Errorf("%s: no panel shows %s", dashboardFile, m)
		}
	}
	for m := range docs {
		if !slices.Contains(used, m) {
			t.Logf("%s: docs/metrics.md lists %s, which no panel shows", dashboardFile, m)
		}
	}
}

func TestParseLabelCell(t *testing.T) {
	t.Parallel()
	labels, closed := parseLabelCell(" `action`, `result` (`ok`, `retryable`, `permanent`), `reason` (`auth`, `unknown`; empty for `ok`) ")
	if !slices.Equal(labels["result"], []string{"ok", "retryable", "permanent"}) || !closed["result"] {
		t.Errorf("result: %v closed %v", labels["result"], closed["result"])
	}
	if _, ok := labels["action"]; !ok || closed["action"] {
		t.Errorf("action: %v closed %v", labels["action"], closed["action"])
	}
	if !slices.Contains(labels["reason"], "auth") || closed["reason"] {
		t.Errorf("reason: %v closed %v (its values are not all listed)", labels["reason"], closed["reason"])
	}
	if len(labels) != 3 {
		t.Errorf("labels %v; want action, result, reason", labels)
	}
}

// promtool, where installed, parses every dashboard query as Prometheus would: each becomes a
// recording rule, Grafana's variables replaced by what Grafana would put there.
func TestDashboardQueriesParse(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed: dashboard queries not parsed")
	}
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && k == "expr" {
					exprs = append(exprs, s)
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(dash)
	if len(exprs) == 0 {
		t.Fatalf("%s: no queries", dashboardFile)
	}
	builtin := regexp.MustCompile(`\$\{?(__rate_interval|__interval|__range)\}?`)
	variable := regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, e := range exprs {
		e = variable.ReplaceAllString(builtin.ReplaceAllString(e, "5m"), ".+")
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:query%d", i), Expr: e})
	}
	out, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if msg, err := exec.CommandContext(ctx, promtool, "check", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules on %s's queries: %v\n%s\n%s", dashboardFile, err, msg, out)
	}
}
