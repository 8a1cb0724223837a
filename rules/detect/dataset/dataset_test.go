package dataset

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCurveAndEvaluate(t *testing.T) {
	scores := []float64{0.9, 0.8, 0.8, 0.3, 0.1}
	labels := []bool{true, false, true, false, true}
	cur := Curve(scores, labels)
	require.Len(t, cur, 4, "tied scores make one point")
	assert.Equal(t, Point{Threshold: 0.9, TP: 1, FP: 0, FN: 2, TN: 2, Precision: 1, Recall: 1.0 / 3, FPR: 0}, cur[0])
	assert.Equal(t, 2, cur[1].TP)
	assert.Equal(t, 1, cur[1].FP)
	last := cur[len(cur)-1]
	assert.Equal(t, 1.0, last.Recall)
	assert.Equal(t, 1.0, last.FPR)

	p := Evaluate(scores, labels, 0.8)
	assert.Equal(t, cur[1], p)
	assert.InDelta(t, 2.0/3, PrecisionAtRecall(cur, 0.5), 1e-12)
	assert.Zero(t, PrecisionAtRecall(nil, 0.5))
}

func TestRead(t *testing.T) {
	in := `{"event":{"meta":{"id":"a"},"type":"edit","user":"1.2.3.4","comment":"","length":{"old":100,"new":50}},"enrichment":{"user_editcount":3,"added_lines":["he is a fucking idiot"],"removed_lines":["he is a politician"],"page_age":100},"label":"vandalism"}
{"event":{"meta":{"id":"b"},"type":"log"},"label":"good"}
{"event":{"meta":{"id":"c"},"type":"edit"}}
`
	ex, err := Read(strings.NewReader(in))
	require.NoError(t, err)
	require.Len(t, ex, 1, "log events and unlabelled cases are skipped")
	f := ex[0].Features
	assert.True(t, ex[0].Vandalism)
	assert.Equal(t, "ip", f.UserType)
	assert.EqualValues(t, 3, f.UserEditCount)
	assert.EqualValues(t, -50, f.EditDelta)
	assert.EqualValues(t, 100, f.PageAge)
	assert.Equal(t, 2, f.Profanity)

	_, err = Read(strings.NewReader("{\n"))
	assert.Error(t, err)
}
