// Package k8s_test checks the Kubernetes manifests against the Kubernetes API
// types and against the rcwatch binary, so that neither can drift.
package k8s_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	natsconf "github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rcwatch/rcwatch/internal/testbed/proctest"
	"github.com/rcwatch/rcwatch/pipeline"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// The Toolforge kubectl overlay is gone: Toolforge runs rcwatch as a jobs
// framework job (deploy/toolforge), see docs/DEPLOY.md.
var overlays = []string{"base", "overlays/cluster"}

// object is one rendered manifest, decoded strictly into its API type.
type object struct {
	kind, name string
	raw        []byte
	typed      any
}

func render(tb testing.TB, dir string) []object {
	tb.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	require.NoError(tb, err, "kustomize build %s", dir)
	var out []object
	for _, r := range rm.Resources() {
		raw, err := r.AsYAML()
		require.NoError(tb, err)
		o := object{kind: r.GetKind(), name: r.GetName(), raw: raw}
		o.typed, err = decodeStrict(o.kind, raw)
		require.NoError(tb, err, "%s: %s %s does not decode strictly", dir, o.kind, o.name)
		out = append(out, o)
	}
	return out
}

// decodeStrict decodes into the official k8s.io/api type (or, for the CRDs,
// a struct of the fields we use): an unknown or misspelled field is an error.
func decodeStrict(kind string, raw []byte) (any, error) {
	var v any
	switch kind {
	case "Deployment":
		v = &appsv1.Deployment{}
	case "StatefulSet":
		v = &appsv1.StatefulSet{}
	case "Service":
		v = &corev1.Service{}
	case "ConfigMap":
		v = &corev1.ConfigMap{}
	case "Namespace":
		v = &corev1.Namespace{}
	case "PodDisruptionBudget":
		v = &policyv1.PodDisruptionBudget{}
	case "HorizontalPodAutoscaler":
		v = &autoscalingv2.HorizontalPodAutoscaler{}
	case "ServiceMonitor":
		v = &serviceMonitor{}
	case "PrometheusRule":
		v = &prometheusRule{}
	case "ScaledObject":
		v = &scaledObject{}
	default:
		return nil, fmt.Errorf("kind %s has no strict type in this test: add one", kind)
	}
	return v, yaml.UnmarshalStrict(raw, v)
}

func TestOverlaysRenderAndDecodeStrictly(t *testing.T) {
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.kind]++
			}
			assert.Equal(t, 5, kinds["Deployment"], "one Deployment per stage: ingest, evaluate, act-irc, act-edit, feed")
			if dir != "base" {
				assert.Equal(t, 1, kinds["StatefulSet"], "NATS")
			}
		})
	}
}

// The strict decoding must be able to fail: a misspelled field is caught.
func TestStrictDecodingCatchesMisspelledFields(t *testing.T) {
	objs := render(t, "base")
	for _, o := range objs {
		if o.kind != "Deployment" {
			continue
		}
		bad := bytes.Replace(o.raw, []byte("containerPort:"), []byte("containerPrt:"), 1)
		_, err := decodeStrict(o.kind, bad)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "containerPrt")
		return
	}
	t.Fatal("no Deployment rendered")
}

func TestEveryStageIsProductionReady(t *testing.T) {
	for _, dir := range overlays {
		objs := render(t, dir)
		pdbs, scalers := map[string]bool{}, map[string]bool{}
		for _, o := range objs {
			switch v := o.typed.(type) {
			case *policyv1.PodDisruptionBudget:
				pdbs[v.Spec.Selector.MatchLabels["app.kubernetes.io/component"]] = true
			case *autoscalingv2.HorizontalPodAutoscaler:
				scalers[v.Spec.ScaleTargetRef.Name] = true
				require.Len(t, v.Spec.Metrics, 1)
				assert.Equal(t, int32(70), *v.Spec.Metrics[0].Resource.Target.AverageUtilization, "%s %s", dir, o.name)
				assert.LessOrEqual(t, *v.Spec.MinReplicas, v.Spec.MaxReplicas)
			case *scaledObject:
				scalers[v.Spec.ScaleTargetRef.Name] = true
				assert.Equal(t, "nats-jetstream", v.Spec.Triggers[0].Type)
			}
		}
		for _, o := range objs {
			d, ok := o.typed.(*appsv1.Deployment)
			if !ok {
				continue
			}
			name := fmt.Sprintf("%s: %s", dir, d.Name)
			comp := d.Spec.Template.Labels["app.kubernetes.io/component"]
			assert.True(t, pdbs[comp], "%s has a PodDisruptionBudget", name)
			assert.True(t, scalers[d.Name], "%s has an HPA or a ScaledObject", name)
			ps := d.Spec.Template.Spec
			require.NotNil(t, ps.SecurityContext)
			assert.True(t, *ps.SecurityContext.RunAsNonRoot, name)
			require.Len(t, ps.Containers, 1)
			c := ps.Containers[0]
			assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path, name)
			assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path, name)
			assert.True(t, *c.SecurityContext.ReadOnlyRootFilesystem, name)
			assert.False(t, *c.SecurityContext.AllowPrivilegeEscalation, name)
			assert.False(t, c.Resources.Requests.Cpu().IsZero(), name)
			assert.False(t, c.Resources.Limits.Memory().IsZero(), name)
			// The grace period covers the stage's drain.
			if drain := flagValue(c.Args, "--drain-timeout"); drain != "" {
				secs := 0
				_, err := fmt.Sscanf(drain, "%ds", &secs)
				require.NoError(t, err)
				assert.Greater(t, *ps.TerminationGracePeriodSeconds, int64(secs), name)
			}
		}
	}
}

// Every Service reaches pods of a Deployment or StatefulSet on a port they
// name; the patroller feed is served by a Service; the ServiceMonitor
// scrapes every rcwatch pod through exactly one Service (no double series).
func TestServicesReachTheirPods(t *testing.T) {
	for _, dir := range overlays {
		objs := render(t, dir)
		type podSet struct {
			name   string
			labels map[string]string
			ports  map[string]bool
		}
		var pods []podSet
		var monitors []*serviceMonitor
		for _, o := range objs {
			var tpl *corev1.PodTemplateSpec
			switch v := o.typed.(type) {
			case *appsv1.Deployment:
				tpl = &v.Spec.Template
			case *appsv1.StatefulSet:
				tpl = &v.Spec.Template
			case *serviceMonitor:
				monitors = append(monitors, v)
			}
			if tpl == nil {
				continue
			}
			ps := podSet{name: o.name, labels: tpl.Labels, ports: map[string]bool{}}
			for _, c := range tpl.Spec.Containers {
				for _, p := range c.Ports {
					ps.ports[p.Name] = true
				}
			}
			pods = append(pods, ps)
		}
		matches := func(sel, labels map[string]string) bool {
			for k, v := range sel {
				if labels[k] != v {
					return false
				}
			}
			return len(sel) > 0
		}
		scrapedBy := map[string]int{}
		feedServed := false
		for _, o := range objs {
			svc, ok := o.typed.(*corev1.Service)
			if !ok {
				continue
			}
			name := fmt.Sprintf("%s: Service %s", dir, svc.Name)
			var targets []podSet
			for _, p := range pods {
				if matches(svc.Spec.Selector, p.labels) {
					targets = append(targets, p)
				}
			}
			require.NotEmpty(t, targets, "%s selects no pods", name)
			for _, sp := range svc.Spec.Ports {
				if sp.TargetPort.StrVal == "" {
					continue
				}
				for _, p := range targets {
					assert.True(t, p.ports[sp.TargetPort.StrVal], "%s: %s has no port %s", name, p.name, sp.TargetPort.StrVal)
				}
				if sp.TargetPort.StrVal == "http" && slices.ContainsFunc(targets, func(p podSet) bool { return p.name == "rcwatch-feed" }) {
					feedServed = true
				}
			}
			for _, m := range monitors {
				if matches(m.Spec.Selector.MatchLabels, svc.Labels) {
					for _, p := range targets {
						scrapedBy[p.name]++
					}
				}
			}
		}
		assert.True(t, feedServed, "%s: a Service serves the feed's http port", dir)
		if len(monitors) > 0 {
			for _, p := range pods {
				if p.ports["metrics"] {
					assert.Equal(t, 1, scrapedBy[p.name], "%s: %s is scraped through one Service", dir, p.name)
				}
			}
		}
	}
}

func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

var (
	flagRe = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`)
)

// helpFlags runs `rcwatch <sub…> --help` and returns the flags it lists.
func helpFlags(tb testing.TB, bin string, sub []string) []string {
	tb.Helper()
	out, err := exec.Command(bin, append(slices.Clone(sub), "--help")...).CombinedOutput()
	require.NoError(tb, err, "rcwatch %v --help: %s", sub, out)
	require.Contains(tb, string(out), "rcwatch "+strings.Join(sub, " ")+" [flags]", "rcwatch %v is not a runnable stage", sub)
	var flags []string
	for _, m := range flagRe.FindAllStringSubmatch(string(out), -1) {
		flags = append(flags, m[1])
	}
	return flags
}

// envName mirrors cmd/rcwatch.EnvName.
func envName(flag string) string {
	return "RCWATCH_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Every container's command and flags exist in the binary, and every
// environment variable the manifests set is one the binary reads.
func TestManifestsMatchTheBinary(t *testing.T) {
	bin, err := proctest.Build(t.TempDir(), proctest.Package)
	require.NoError(t, err)
	source := goSource(t)
	for _, dir := range overlays {
		objs := render(t, dir)
		configMaps := map[string]*corev1.ConfigMap{}
		for _, o := range objs {
			if cm, ok := o.typed.(*corev1.ConfigMap); ok {
				configMaps[cm.Name] = cm
			}
		}
		for _, o := range objs {
			d, ok := o.typed.(*appsv1.Deployment)
			if !ok {
				continue
			}
			c := d.Spec.Template.Spec.Containers[0]
			var sub []string
			for _, a := range c.Args {
				if strings.HasPrefix(a, "-") {
					break
				}
				sub = append(sub, a)
			}
			flags := helpFlags(t, bin, sub)
			for _, a := range c.Args[len(sub):] {
				name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
				assert.Contains(t, flags, name, "%s: %s: rcwatch %v has no flag --%s", dir, d.Name, sub, name)
			}
			var envs []string
			for _, e := range c.Env {
				envs = append(envs, e.Name)
			}
			for _, ef := range c.EnvFrom {
				cm := configMaps[ef.ConfigMapRef.Name]
				require.NotNil(t, cm, "%s: %s: ConfigMap %s", dir, d.Name, ef.ConfigMapRef.Name)
				for k := range cm.Data {
					envs = append(envs, k)
				}
			}
			// The configuration files the container mounts may name
			// variables too (secrets: `password: {env: NAME}`).
			var mounted strings.Builder
			for _, v := range d.Spec.Template.Spec.Volumes {
				if v.ConfigMap != nil && configMaps[v.ConfigMap.Name] != nil {
					for _, data := range configMaps[v.ConfigMap.Name].Data {
						mounted.WriteString(data)
					}
				}
			}
			for _, e := range envs {
				readsFlag := slices.ContainsFunc(flags, func(f string) bool { return envName(f) == e })
				readsDirectly := strings.Contains(source, `"`+e+`"`)
				inConfig := regexp.MustCompile(`env:\s*"?` + e + `\b`).MatchString(mounted.String())
				assert.True(t, readsFlag || readsDirectly || inConfig,
					"%s: %s sets %s, which rcwatch %v neither maps to a flag nor reads", dir, d.Name, e, sub)
			}
		}
	}
}

// Every rcwatch_ metric the alerts and the dashboard use is defined in code.
func TestMonitoringUsesRealMetrics(t *testing.T) {
	source := goSource(t)
	metric := regexp.MustCompile(`rcwatch_[a-z_]+`)
	for _, f := range []string{"components/monitoring/prometheusrule.yaml", "components/monitoring/dashboard.json"} {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range slices.Compact(slices.Sorted(slices.Values(metric.FindAllString(string(b), -1)))) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
			assert.True(t, strings.Contains(source, `"`+base+`"`), "%s uses %s, which no code defines", f, m)
		}
	}
}

// goSource is the text of every non-test Go file of the module.
func goSource(tb testing.TB) string {
	tb.Helper()
	var sb strings.Builder
	err := filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == ".git") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sb.Write(b)
		}
		return nil
	})
	require.NoError(tb, err)
	return sb.String()
}

// The CRDs: only the fields the manifests use, decoded strictly.
type serviceMonitor struct {
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Metadata   map[string]any     `json:"metadata"`
	Spec       serviceMonitorSpec `json:"spec"`
}

type serviceMonitorSpec struct {
	Selector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
	Endpoints []struct {
		Port     string `json:"port"`
		Path     string `json:"path"`
		Interval string `json:"interval"`
	} `json:"endpoints"`
}

type prometheusRule struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   map[string]any `json:"metadata"`
	Spec       struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for,omitempty"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

type scaledObject struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   map[string]any `json:"metadata"`
	Spec       struct {
		ScaleTargetRef struct {
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount int `json:"minReplicaCount"`
		MaxReplicaCount int `json:"maxReplicaCount"`
		CooldownPeriod  int `json:"cooldownPeriod"`
		Triggers        []struct {
			Type       string            `json:"type"`
			MetricType string            `json:"metricType,omitempty"`
			Metadata   map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

// The cluster overlay's storage adds up: every stream's and bucket's byte
// limit (what rcwatch creates, pipeline.DefaultLimits and the KV configs,
// as no manifest overrides them) fits under NATS's max_file_store, which
// JetStream checks against the sum of the reservations on each node; and
// max_file_store, plus room for the file store's own overhead (indexes,
// raft logs, block slack), fits on the node's PVC. With R replicas over N
// nodes a node can hold a replica of every stream, each on its own volume:
// the per-node budget is the whole sum, and R must not exceed N.
func TestClusterStorageFitsTheVolumes(t *testing.T) {
	objs := render(t, "overlays/cluster")
	var (
		sts      *appsv1.StatefulSet
		natsConf string
		env      map[string]string
	)
	for _, o := range objs {
		switch v := o.typed.(type) {
		case *appsv1.StatefulSet:
			if o.name == "nats" {
				sts = v
			}
		case *corev1.ConfigMap:
			if strings.HasPrefix(o.name, "nats-config") {
				natsConf = v.Data["nats.conf"]
			}
			if strings.HasPrefix(o.name, "rcwatch-env") {
				env = v.Data
			}
		case *appsv1.Deployment:
			for _, c := range v.Spec.Template.Spec.Containers {
				for _, a := range append(slices.Clone(c.Args), c.Command...) {
					assert.NotContains(t, a, "stream-max-bytes", "%s sets stream limits: sum them here instead of the defaults", o.name)
				}
				for _, e := range c.Env {
					assert.NotContains(t, e.Name, "STREAM_MAX_BYTES", "%s sets stream limits: sum them here instead of the defaults", o.name)
				}
			}
		}
	}
	require.NotNil(t, sts, "the NATS StatefulSet")
	require.NotEmpty(t, natsConf, "the nats-config ConfigMap")
	require.NotNil(t, env, "the rcwatch-env ConfigMap")
	for k := range env {
		assert.NotContains(t, k, "STREAM_MAX_BYTES", "rcwatch-env sets stream limits: sum them here instead of the defaults")
	}

	// The topology rcwatch creates in this overlay.
	replicas, err := strconv.Atoi(env["RCWATCH_STREAM_REPLICAS"])
	require.NoError(t, err, "RCWATCH_STREAM_REPLICAS")
	require.NotNil(t, sts.Spec.Replicas)
	nodes := int(*sts.Spec.Replicas)
	assert.Equal(t, 3, replicas, "R3 streams")
	assert.LessOrEqual(t, replicas, nodes, "a stream cannot have more replicas than NATS nodes")
	topo := pipeline.Topology{Replicas: replicas, Storage: jetstream.FileStorage}
	var perNode int64
	for _, c := range topo.StreamConfigs() {
		require.Positive(t, c.MaxBytes, "stream %s has a byte limit", c.Name)
		perNode += c.MaxBytes
	}
	for _, kv := range topo.KeyValueConfigs() {
		require.Positive(t, kv.MaxBytes, "bucket %s has a byte limit", kv.Bucket)
		perNode += kv.MaxBytes
	}

	// max_file_store, read with the server's own parser (20G is 20×10^9).
	t.Setenv("POD_NAME", "nats-0") // server_name: $POD_NAME
	parsed, err := natsconf.Parse(natsConf)
	require.NoError(t, err, "nats.conf")
	js, ok := parsed["jetstream"].(map[string]any)
	require.True(t, ok, "nats.conf has a jetstream block")
	maxFile, ok := js["max_file_store"].(int64)
	require.True(t, ok, "jetstream.max_file_store is set (without it NATS takes 75%% of the disk)")
	assert.LessOrEqual(t, perNode, maxFile,
		"a node holds a replica of every stream and bucket: %d bytes of limits over max_file_store %d", perNode, maxFile)
	storeDir, _ := js["store_dir"].(string)

	// The PVC each node gets, mounted where the store is.
	var pvc *corev1.PersistentVolumeClaim
	for i := range sts.Spec.VolumeClaimTemplates {
		c := &sts.Spec.VolumeClaimTemplates[i]
		for _, m := range sts.Spec.Template.Spec.Containers[0].VolumeMounts {
			if m.Name == c.Name && storeDir != "" && strings.HasPrefix(storeDir+"/", strings.TrimSuffix(m.MountPath, "/")+"/") {
				pvc = c
			}
		}
	}
	require.NotNil(t, pvc, "a volume claim template is mounted over store_dir %q", storeDir)
	size := pvc.Spec.Resources.Requests.Storage().Value()
	assert.LessOrEqual(t, maxFile+maxFile/10, size,
		"max_file_store %d plus 10%% for the store's overhead fits on the %s PVC (%d bytes)", maxFile, pvc.Name, size)
	t.Logf("per node: limits %d MiB, max_file_store %d MiB, PVC %d MiB; %d nodes, R%d",
		perNode>>20, maxFile>>20, size>>20, nodes, replicas)
}
