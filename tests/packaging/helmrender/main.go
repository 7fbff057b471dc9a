// helmrender renders a Helm chart the way `helm template` does, for tests on
// machines without Helm: Go's text/template with sprig plus Helm's own
// functions (include, tpl, required, fail, toYaml, fromYaml, toJson, lookup)
// and .Files (Get, GetBytes, Lines) over the chart's other files.
//
// Usage: helmrender [-f values.yaml]... [--set a.b=v]... [--set-string a.b=v]...
//
//	[--release NAME] [--namespace NS] [--upgrade] CHART_DIR
//
// Prints the manifests on stdout, each preceded by "---" and a "# Source:"
// line; exits 1 with the error on stderr when a template fails (required, fail).
//
// It copies the Helm behaviour that decides whether a chart works:
//   - numbers in values files are float64 (Helm decodes YAML through JSON), so
//     a template printing 3600000 without int gets "3.6e+06", as with Helm;
//     --set integers are int64;
//   - user values are merged over values.yaml, and null deletes a default key;
//   - a missing key renders as "" (missingkey=zero, "<no value>" removed);
//   - every file of templates/ is parsed into one set, so a define anywhere is
//     visible everywhere; files starting with "_" are not rendered;
//   - .Files holds every file of the chart but templates/, charts/ and
//     Chart.yaml, values.yaml, values.schema.json (as Helm's loader sorts
//     them), symbolic links followed; .Files.Get of a missing file is "".
//
// Build (Debian packages golang-go, golang-github-masterminds-sprig-dev,
// golang-gopkg-yaml.v2-dev): GO111MODULE=off GOPATH=/usr/share/gocode go build
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v2"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// apiVersions is .Capabilities.APIVersions, with Helm's Has method.
type apiVersions []string

func (a apiVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

// chartFiles is .Files with Helm's methods: a missing file reads as empty.
type chartFiles map[string][]byte

func (f chartFiles) Get(name string) string      { return string(f[name]) }
func (f chartFiles) GetBytes(name string) []byte { return f[name] }
func (f chartFiles) Lines(name string) []string {
	s := string(f[name])
	if s == "" {
		return []string{}
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// loadFiles reads the chart's files that Helm's loader keeps as .Files.
func loadFiles(chartDir string) (chartFiles, error) {
	out := chartFiles{}
	err := filepath.Walk(chartDir, func(path string, info os.FileInfo, werr error) error {
		if werr != nil {
			return werr
		}
		rel, _ := filepath.Rel(chartDir, path)
		rel = filepath.ToSlash(rel)
		if info.IsDir() {
			if rel == "templates" || rel == "charts" {
				return filepath.SkipDir
			}
			return nil
		}
		switch rel {
		case "Chart.yaml", "values.yaml", "values.schema.json", ".helmignore":
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out[rel] = data
		return nil
	})
	return out, err
}

func main() {
	var valueFiles, sets, setStrings, apis multiFlag
	flag.Var(&valueFiles, "f", "values file (repeatable, later wins)")
	flag.Var(&valueFiles, "values", "values file (repeatable, later wins)")
	flag.Var(&sets, "set", "a.b=value override (repeatable)")
	flag.Var(&setStrings, "set-string", "a.b=value override, always a string (repeatable)")
	flag.Var(&apis, "api-versions", "extra API version for .Capabilities.APIVersions (repeatable)")
	release := flag.String("release", "test", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	upgrade := flag.Bool("upgrade", false, "render as an upgrade (.Release.IsUpgrade)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: helmrender [-f values.yaml]... [--set a.b=v]... CHART_DIR")
		os.Exit(2)
	}
	out, err := render(flag.Arg(0), valueFiles, sets, setStrings, apis, *release, *namespace, *upgrade)
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
	os.Stdout.WriteString(out)
}

func render(chartDir string, valueFiles, sets, setStrings, apis []string, release, namespace string,
	upgrade bool) (string, error) {
	chartMeta, err := readYAMLFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return "", err
	}
	chartName, _ := chartMeta["name"].(string)
	if chartName == "" {
		return "", errors.New("Chart.yaml has no name")
	}
	defaults, err := readYAMLFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return "", err
	}
	user := map[string]interface{}{}
	for _, f := range valueFiles {
		v, err := readYAMLFile(f)
		if err != nil {
			return "", err
		}
		user = mergeMaps(user, v)
	}
	for _, s := range sets {
		if err := parseSet(user, s, false); err != nil {
			return "", err
		}
	}
	for _, s := range setStrings {
		if err := parseSet(user, s, true); err != nil {
			return "", err
		}
	}
	values := coalesce(user, defaults)

	// Helm exposes Chart.yaml's fields capitalised: appVersion -> .Chart.AppVersion.
	chart := map[string]interface{}{}
	for k, v := range chartMeta {
		chart[strings.ToUpper(k[:1])+k[1:]] = v
	}
	caps := map[string]interface{}{
		"KubeVersion": map[string]interface{}{"Version": "v1.29.0", "GitVersion": "v1.29.0",
			"Major": "1", "Minor": "29"},
		"APIVersions": append(apiVersions{"v1", "apps/v1", "batch/v1", "policy/v1"}, apis...),
	}

	files, err := loadFiles(chartDir)
	if err != nil {
		return "", err
	}

	t := template.New("gotpl").Option("missingkey=zero")
	t.Funcs(funcMap(t))
	templatesDir := filepath.Join(chartDir, "templates")
	var names []string
	err = filepath.Walk(templatesDir, func(path string, info os.FileInfo, werr error) error {
		if werr != nil || info.IsDir() {
			return werr
		}
		rel, _ := filepath.Rel(templatesDir, path)
		name := chartName + "/templates/" + filepath.ToSlash(rel)
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if _, err := t.New(name).Parse(string(src)); err != nil {
			return err
		}
		names = append(names, name)
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(names)

	var out strings.Builder
	for _, name := range names {
		base := filepath.Base(name)
		if strings.HasPrefix(base, "_") {
			continue
		}
		top := map[string]interface{}{
			"Values": values,
			"Chart":  chart,
			"Release": map[string]interface{}{"Name": release, "Namespace": namespace,
				"IsInstall": !upgrade, "IsUpgrade": upgrade, "Revision": 1, "Service": "Helm"},
			"Capabilities": caps,
			"Template":     map[string]interface{}{"Name": name, "BasePath": chartName + "/templates"},
			"Files":        files,
		}
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, name, top); err != nil {
			return "", err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		// NOTES.txt is shown to the user, not applied: checked to render, not printed.
		if base == "NOTES.txt" || strings.TrimSpace(text) == "" {
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", name, strings.TrimRight(text, "\n"))
	}
	return out.String(), nil
}

func funcMap(t *template.Template) template.FuncMap {
	f := sprig.TxtFuncMap()
	// Helm removes these so a chart cannot read the machine's environment.
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = toYAML
	f["fromYaml"] = fromYAML
	f["toJson"] = toJSON
	f["fromJson"] = fromJSON
	f["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return v, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return v, errors.New(msg)
		}
		return v, nil
	}
	f["fail"] = func(msg string) (string, error) { return "", errors.New(msg) }
	f["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		c, err := t.Clone()
		if err != nil {
			return "", err
		}
		if _, err := c.New("tpl").Parse(text); err != nil {
			return "", err
		}
		var buf bytes.Buffer
		if err := c.ExecuteTemplate(&buf, "tpl", data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	// No cluster to ask: `helm template` also gets an empty answer.
	f["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	return f
}

// toYAML is Helm's: JSON first (so struct tags and number forms match
// sigs.k8s.io/yaml), then YAML with sorted keys, without the final newline.
func toYAML(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var obj interface{}
	if err := yaml.Unmarshal(j, &obj); err != nil {
		return ""
	}
	y, err := yaml.Marshal(obj)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(y), "\n")
}

func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	v, err := decodeYAML([]byte(s))
	if err != nil {
		m["Error"] = err.Error()
		return m
	}
	if mv, ok := v.(map[string]interface{}); ok {
		return mv
	}
	return m
}

func toJSON(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(j)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

// decodeYAML reads YAML as Helm does (sigs.k8s.io/yaml): YAML 1.1 via
// yaml.v2, string keys, then through JSON, so every number is a float64.
func decodeYAML(data []byte) (interface{}, error) {
	var raw interface{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	j, err := json.Marshal(stringKeys(raw))
	if err != nil {
		return nil, err
	}
	var v interface{}
	if err := json.Unmarshal(j, &v); err != nil {
		return nil, err
	}
	return v, nil
}

func stringKeys(v interface{}) interface{} {
	switch x := v.(type) {
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = stringKeys(e)
		}
		return m
	case []interface{}:
		for i := range x {
			x[i] = stringKeys(x[i])
		}
		return x
	}
	return v
}

func readYAMLFile(path string) (map[string]interface{}, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	v, err := decodeYAML(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if v == nil {
		return map[string]interface{}{}, nil
	}
	m, ok := v.(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: not a mapping", path)
	}
	return m, nil
}

// mergeMaps merges values files: maps merge key by key, anything else is
// replaced by the later file (nulls are kept, for coalesce to delete).
func mergeMaps(a, b map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if bm, ok := v.(map[string]interface{}); ok {
			if am, ok := out[k].(map[string]interface{}); ok {
				out[k] = mergeMaps(am, bm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// coalesce lays user values over the chart's defaults; a user null removes
// the default key (Helm's documented way to unset one).
func coalesce(user, defaults map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(defaults))
	for k, v := range defaults {
		out[k] = v
	}
	for k, v := range user {
		if v == nil {
			delete(out, k)
			continue
		}
		if um, ok := v.(map[string]interface{}); ok {
			if dm, ok := out[k].(map[string]interface{}); ok {
				out[k] = coalesce(um, dm)
				continue
			}
			out[k] = coalesce(um, map[string]interface{}{})
			continue
		}
		out[k] = v
	}
	return out
}

// parseSet applies one --set argument: a.b=v[,c=w], "\." for a dot inside a
// key, {x,y} for a list. Values are typed like Helm's: true/false, null,
// integers (int64), else strings; --set-string keeps strings.
func parseSet(dst map[string]interface{}, arg string, asString bool) error {
	for _, item := range splitUnescaped(arg, ',', true) {
		eq := indexUnescaped(item, '=')
		if eq < 0 {
			return fmt.Errorf("--set %q: no '=' in %q", arg, item)
		}
		path := splitUnescaped(item[:eq], '.', false)
		raw := item[eq+1:]
		var val interface{}
		if strings.HasPrefix(raw, "{") && strings.HasSuffix(raw, "}") {
			list := []interface{}{}
			if inner := raw[1 : len(raw)-1]; inner != "" {
				for _, e := range splitUnescaped(inner, ',', false) {
					list = append(list, typed(unescape(e), asString))
				}
			}
			val = list
		} else {
			val = typed(unescape(raw), asString)
		}
		m := dst
		for i, p := range path {
			p = unescape(p)
			if i == len(path)-1 {
				m[p] = val
				break
			}
			next, ok := m[p].(map[string]interface{})
			if !ok {
				next = map[string]interface{}{}
				m[p] = next
			}
			m = next
		}
	}
	return nil
}

func typed(s string, asString bool) interface{} {
	if asString {
		return s
	}
	switch strings.ToLower(s) {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	}
	if s == "0" {
		return int64(0)
	}
	if !strings.HasPrefix(s, "0") {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	}
	return s
}

// splitUnescaped splits on sep not preceded by a backslash (and, when
// braces is set, not inside {...}); escapes are kept for unescape.
func splitUnescaped(s string, sep byte, braces bool) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++
		case braces && s[i] == '{':
			depth++
		case braces && s[i] == '}':
			depth--
		case s[i] == sep && depth == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

func indexUnescaped(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
		} else if s[i] == c {
			return i
		}
	}
	return -1
}

func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
