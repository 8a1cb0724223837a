package rules

import (
	"bytes"
	"compress/bzip2"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/rules/detect"
)

var updateCases = flag.Bool("update-cases", false, "rewrite testdata/cases/cluebot.dev.jsonl from the ClueBot NG fixture")

const (
	clueBotFixture = "../testdata/fixtures/vandalism.cluebotng.dev.csv"
	clueBotCases   = "../testdata/cases/cluebot.dev.jsonl"
)

func readClueBotFixture(t *testing.T) []Case {
	t.Helper()
	f, err := os.Open(clueBotFixture)
	require.NoError(t, err)
	defer f.Close()
	cases, err := CasesFromClueBot(f)
	require.NoError(t, err)
	return cases
}

func TestCasesFromClueBot(t *testing.T) {
	cases := readClueBotFixture(t)
	require.Len(t, cases, 294)
	var vandal int
	ids := map[string]bool{}
	for i, c := range cases {
		ev, err := event.Decode(c.Event)
		require.NoError(t, err, "case %d", i)
		assert.Equal(t, "edit", ev.Type)
		assert.Equal(t, "enwiki", ev.Wiki)
		assert.Equal(t, "https://en.wikipedia.org", ev.ServerURL)
		assert.Equal(t, "/w", ev.ServerScriptPath)
		require.NotNil(t, ev.Revision.New)
		assert.False(t, ids[ev.Meta.ID], "duplicate meta.id %s", ev.Meta.ID)
		ids[ev.Meta.ID] = true
		assert.Equal(t, ev.Timestamp, ev.Time().Unix())
		if c.Label == LabelVandalism {
			vandal++
		} else {
			assert.Equal(t, LabelGood, c.Label)
		}
		for _, after := range []string{"user_editcount", "user_warns", "user_distinct_pages", "num_recent_edits", "num_recent_reversions"} {
			assert.NotContains(t, c.Enrichment, after, "exported years after the edit: not an edit-time input")
		}
		if ev.UserType() == "ip" {
			assert.EqualValues(t, 0, c.Enrichment["user_age"], "IPs have user_age 0")
		}
	}
	assert.Equal(t, 28, vandal)

	// The first row, checked field by field.
	ev, err := event.Decode(cases[0].Event)
	require.NoError(t, err)
	assert.Equal(t, "Florida", ev.Title)
	assert.Equal(t, "Ute in DC", ev.User)
	assert.EqualValues(t, 394517597, *ev.Revision.New)
	assert.EqualValues(t, 1288755849, ev.Timestamp)
	assert.Equal(t, "2010-11-03T03:44:09Z", ev.Meta.DT)
	assert.Equal(t, clueBotMetaID(394517597), ev.Meta.ID)
	assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, ev.Meta.ID)
	e := cases[0].Enrichment
	assert.Equal(t, []string{"| Senators = [[Bill Nelson (politician)|Bill Nelson]] (D)<br />[[George LeMieux]] (R)"}, e["added_lines"])
	assert.Equal(t, []string{"| Senators = [[Bill Nelson (politician)|Bill Nelson]] (D)<br />[[Marco Rubio]] (R)"}, e["removed_lines"])
	assert.EqualValues(t, 1288755849-1228940029, e["user_age"])
	assert.EqualValues(t, 1288755849-1014651791, e["page_age"])
	assert.EqualValues(t, 3, e["edit_delta"], "George LeMieux is 3 bytes longer than Marco Rubio")

	// A non-article namespace gets its prefix and number.
	var found bool
	for _, c := range cases {
		ev, _ := event.Decode(c.Event)
		if ev.Namespace == 4 {
			found = true
			assert.Equal(t, "Wikipedia:Reference desk/Language", ev.Title)
		}
	}
	assert.True(t, found)
}

func TestCasesFromClueBotErrors(t *testing.T) {
	header := "EditID,title,namespace,user,comment,current_timestamp,added_lines,deleted_lines,isvandalism,user_edit_count,user_reg_time\n"
	tests := []struct {
		name, csv, want string
	}{
		{"empty", "", "reading ClueBot NG header"},
		{"missing column", "EditID,title\n1,x\n", `missing column "namespace"`},
		{"bad id", header + "x,T,main,U,,1288755849,a,b,True,1,1\n", "EditID"},
		{"bad namespace", header + "1,T,nowhere,U,,1288755849,a,b,True,1,1\n", "unknown namespace"},
		{"bad label", header + "1,T,main,U,,1288755849,a,b,maybe,1,1\n", "isvandalism"},
		{"bad time", header + "x,T,main,U,,later,a,b,True,1,1\n", "EditID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CasesFromClueBot(strings.NewReader(tt.csv))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestCasesFromClueBotBadDiff(t *testing.T) {
	csv := "EditID,title,namespace,user,comment,current_timestamp,added_lines,deleted_lines,isvandalism,user_edit_count,user_reg_time\n" +
		"7,T,main,1.2.3.4,,1288755849,BAD REQUEST,BAD REQUEST,False,3,20101103034415\n"
	cases, err := CasesFromClueBot(strings.NewReader(csv))
	require.NoError(t, err)
	require.Len(t, cases, 1)
	assert.NotContains(t, cases[0].Enrichment, "added_lines", "an unfetched diff is unknown, not empty")
	assert.NotContains(t, cases[0].Enrichment, "edit_delta")
	assert.EqualValues(t, 0, cases[0].Enrichment["user_age"])
}

// An empty cell is unknown: a named user with no registration time gets no
// user_age, a row without page_made_time no page_age.
func TestCasesFromClueBotEmptyCells(t *testing.T) {
	csv := "EditID,title,namespace,user,comment,current_timestamp,added_lines,deleted_lines,isvandalism,user_edit_count,user_reg_time,user_warns,page_made_time\n" +
		"7,T,main,Someone,,1288755849,a,b,False,,,,\n"
	cases, err := CasesFromClueBot(strings.NewReader(csv))
	require.NoError(t, err)
	require.Len(t, cases, 1)
	for _, k := range []string{"user_age", "page_age", "user_editcount", "user_warns"} {
		assert.NotContains(t, cases[0].Enrichment, k)
	}
}

const (
	oresDevFixture = "../testdata/fixtures/ores.enwiki.features_reverted.dev.tsv.bz2"
	oresDevCases   = "../testdata/cases/ores.dev.jsonl.bz2"
)

func TestCasesFromORES(t *testing.T) {
	in := "677650970\t1\t1\t0\t0.0\t0.0\t1.0\tFalse\tFalse\t224994649\tFalse\n" +
		"695071713\t1\t0\t10974\t-1.0\t-2.547619047619048\t-1477.9699604325442\tTrue\tFalse\t313948852\tTrue\n"
	cases, err := CasesFromORES(strings.NewReader(in))
	require.NoError(t, err)
	require.Len(t, cases, 2)
	assert.Equal(t, LabelGood, cases[0].Label)
	assert.Equal(t, LabelVandalism, cases[1].Label)
	ev, err := event.Decode(cases[1].Event)
	require.NoError(t, err)
	assert.EqualValues(t, 695071713, *ev.Revision.New)
	assert.Equal(t, caseMetaID("ores", 695071713), ev.Meta.ID)
	assert.Equal(t, "enwiki", ev.Wiki)
	e := cases[1].Enrichment
	assert.Equal(t, "ip", e["user_type"])
	assert.EqualValues(t, 0, e["user_age"], "IPs have user_age 0 (the file holds the time since 2006)")
	assert.EqualValues(t, 10974, e["words_removed"])
	assert.InDelta(t, -1477.97, e["non_stopword_prop_delta"], 0.01)
	assert.Equal(t, "named", cases[0].Enrichment["user_type"])
	assert.EqualValues(t, 224994649, cases[0].Enrichment["user_age"])

	// The features reach the score's inputs unchanged.
	f, err := CaseFeatures(ev, cases[1].Enrichment)
	require.NoError(t, err)
	assert.True(t, f.ORESKnown)
	assert.False(t, f.TextKnown, "an ORES case has no text")
	assert.Equal(t, 10974, f.ORES.WordsRemoved)
	assert.InDelta(t, -2.5476, f.ORES.InformalsDelta, 1e-3)
	assert.Equal(t, "ip", f.UserType)

	for name, bad := range map[string]string{
		"columns": "1\t2\n",
		"rev_id":  "x\t1\t1\t0\t0\t0\t1\tFalse\tFalse\t1\tFalse\n",
		"feature": "1\tx\t1\t0\t0\t0\t1\tFalse\tFalse\t1\tFalse\n",
		"label":   "1\t1\t1\t0\t0\t0\t1\tFalse\tFalse\t1\tmaybe\n",
	} {
		_, err := CasesFromORES(strings.NewReader(bad))
		assert.Error(t, err, name)
	}
}

// TestORESCasesFile: the committed ORES dev cases are what the converter
// makes of the committed dev split (bzip2 input recognised).
func TestORESCasesFile(t *testing.T) {
	if raceEnabled {
		t.Skip("converts 10,484 rows (minutes under -race; no concurrency here)")
	}
	f, err := os.Open(oresDevFixture)
	require.NoError(t, err)
	defer f.Close()
	cases, err := CasesFromORES(f)
	require.NoError(t, err)
	require.Len(t, cases, 10484)
	vandal := 0
	for _, c := range cases {
		if c.Label == LabelVandalism {
			vandal++
		}
	}
	assert.Equal(t, 644, vandal)
	var want bytes.Buffer
	require.NoError(t, WriteCases(&want, cases))
	cf, err := os.Open(oresDevCases)
	require.NoError(t, err)
	defer cf.Close()
	got, err := io.ReadAll(bzip2.NewReader(cf))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want.Bytes(), got), "%s is stale: regenerate it with rcwatch rules cases --from ores-reverted %s | bzip2 -9", oresDevCases, oresDevFixture)
}

// TestFeaturesOfflineEqualsLive: for the same case, the features the
// training command gets (CaseFeatures, from the case's enrichment) are the
// ones the evaluator computes live (an Enricher returning the same diff
// and user).
func TestFeaturesOfflineEqualsLive(t *testing.T) {
	for i, c := range readClueBotFixture(t) {
		ev, err := event.Decode(c.Event)
		require.NoError(t, err)
		off, err := CaseFeatures(ev, c.Enrichment)
		require.NoError(t, err)

		var live Vars
		live.fillEvent(ev)
		en := &Enrichment{}
		got := Need{User: true}
		if al, ok := c.Enrichment["added_lines"].([]string); ok {
			en.AddedLines, en.RemovedLines = al, c.Enrichment["removed_lines"].([]string)
			got.Diff = true
		}
		if ev.UserType() == "named" {
			age, ok := c.Enrichment["user_age"].(int64)
			if !ok {
				continue // unknown registration: live would take revscoring's 2006 epoch
			}
			en.UserRegistration = ev.Time().Add(-time.Duration(age) * time.Second)
		}
		live.fillEnrichment(en, got, ev.Time())
		// What the enricher does not fetch live yet (the page's age, the
		// byte sizes) comes from the event or the case alike.
		if pa, ok := c.Enrichment["page_age"].(int64); ok {
			live.PageAge = pa
		}
		if d, ok := c.Enrichment["edit_delta"].(int64); ok {
			live.EditDelta = d
		}
		lf := live.textFeatures()
		assert.Equal(t, fmt.Sprint(detect.Inputs(off)), fmt.Sprint(detect.Inputs(lf)), "case %d", i) // NaN is missing
		assert.Equal(t, detect.VandalismScore(off), detect.VandalismScore(lf), "case %d", i)
	}
}

func TestReadCases(t *testing.T) {
	in := `{"event":{"meta":{"id":"a"}},"label":"vandalism","enrichment":{"user_editcount":3}}

{"event":{"meta":{"id":"b"}}}
`
	cases, err := ReadCases(strings.NewReader(in))
	require.NoError(t, err)
	require.Len(t, cases, 2)
	assert.Equal(t, LabelVandalism, cases[0].Label)
	assert.EqualValues(t, 3, cases[0].Enrichment["user_editcount"])
	assert.JSONEq(t, `{"meta":{"id":"b"}}`, string(cases[1].Event))
	assert.Empty(t, cases[1].Label)

	for name, bad := range map[string]string{
		"not json":  "{",
		"no event":  `{"label":"good"}`,
		"bad label": `{"event":{},"label":"spam"}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ReadCases(strings.NewReader("\n" + bad + "\n"))
			require.Error(t, err)
			assert.Contains(t, err.Error(), "line 2")
		})
	}
}

// TestClueBotCasesFile checks that testdata/cases/cluebot.dev.jsonl is what
// the converter produces from the fixture (run with -update-cases to
// regenerate it), and that it round-trips through ReadCases.
func TestClueBotCasesFile(t *testing.T) {
	cases := readClueBotFixture(t)
	var buf bytes.Buffer
	require.NoError(t, WriteCases(&buf, cases))
	if *updateCases {
		require.NoError(t, os.MkdirAll(filepath.Dir(clueBotCases), 0o755))
		require.NoError(t, os.WriteFile(clueBotCases, buf.Bytes(), 0o644))
	}
	got, err := os.ReadFile(clueBotCases)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(buf.Bytes(), got), "%s is stale: regenerate it with `rcwatch rules cases --from cluebot %s`", clueBotCases, clueBotFixture)

	back, err := ReadCases(bytes.NewReader(got))
	require.NoError(t, err)
	require.Len(t, back, len(cases))
	for i := range cases {
		assert.JSONEq(t, string(cases[i].Event), string(back[i].Event))
		assert.Equal(t, cases[i].Label, back[i].Label)
		a, _ := json.Marshal(cases[i].Enrichment)
		b, _ := json.Marshal(back[i].Enrichment)
		assert.JSONEq(t, string(a), string(b))
	}
}
