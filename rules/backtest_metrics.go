package rules

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// ROCAUC is the area under the ROC curve of scores against labels (true:
// vandalism): the probability that a random vandal edit scores above a
// random good one, ties counting half. NaN when a class is empty.
func ROCAUC(scores []float64, vandal []bool) float64 {
	scores, vandal = withoutNaN(scores, vandal)
	idx := sortedDesc(scores)
	pos, neg := countLabels(vandal)
	if pos == 0 || neg == 0 {
		return math.NaN()
	}
	// Mann–Whitney: for each group of tied scores, the good edits below it.
	var sum float64
	negAbove := 0
	for k := 0; k < len(idx); {
		j := k
		p, n := 0, 0
		for ; j < len(idx) && scores[idx[j]] == scores[idx[k]]; j++ {
			if vandal[idx[j]] {
				p++
			} else {
				n++
			}
		}
		// each vandal edit here beats the good edits below (neg-negAbove-n)
		// and ties with n.
		sum += float64(p) * (float64(neg-negAbove-n) + 0.5*float64(n))
		negAbove += n
		k = j
	}
	return sum / float64(pos) / float64(neg)
}

// AveragePrecision is Σ (Rₖ − Rₖ₋₁)·Pₖ over the distinct scores from the
// highest down (scikit-learn's definition). NaN when there is no vandalism.
func AveragePrecision(scores []float64, vandal []bool) float64 {
	scores, vandal = withoutNaN(scores, vandal)
	idx := sortedDesc(scores)
	pos, _ := countLabels(vandal)
	if pos == 0 {
		return math.NaN()
	}
	ap, prevR := 0.0, 0.0
	tp, fp := 0, 0
	for k := 0; k < len(idx); {
		th := scores[idx[k]]
		for ; k < len(idx) && scores[idx[k]] == th; k++ {
			if vandal[idx[k]] {
				tp++
			} else {
				fp++
			}
		}
		r := float64(tp) / float64(pos)
		ap += (r - prevR) * float64(tp) / float64(tp+fp)
		prevR = r
	}
	return ap
}

// Interval is a figure with its bootstrap confidence interval.
type Interval struct {
	Value float64 `json:"value"`
	Low   float64 `json:"ci_low"`
	High  float64 `json:"ci_high"`
}

// BootstrapCI is stat on the data and its 95% percentile interval over n
// bootstrap resamples of the cases (with replacement, so the base rate
// varies as it would in another sample of the same size). Deterministic for
// a seed.
func BootstrapCI(scores []float64, vandal []bool, n int, seed uint64, stat func([]float64, []bool) float64) Interval {
	iv := Interval{Value: stat(scores, vandal)}
	if n <= 0 || len(scores) == 0 {
		iv.Low, iv.High = iv.Value, iv.Value
		return iv
	}
	rng := rand.New(rand.NewPCG(seed, 0x16))
	s := make([]float64, len(scores))
	l := make([]bool, len(scores))
	vals := make([]float64, 0, n)
	for b := 0; b < n; b++ {
		for i := range s {
			j := rng.IntN(len(scores))
			s[i], l[i] = scores[j], vandal[j]
		}
		if v := stat(s, l); !math.IsNaN(v) {
			vals = append(vals, v)
		}
	}
	if len(vals) == 0 {
		iv.Low, iv.High = math.NaN(), math.NaN()
		return iv
	}
	p := percentiles(iv.Value, vals)
	return *p
}

// PrecisionRecallAt is the precision and recall of "score ≥ threshold".
func PrecisionRecallAt(scores []float64, vandal []bool, threshold float64) (precision, recall float64) {
	tp, fp, pos := 0, 0, 0
	for i, s := range scores {
		if vandal[i] {
			pos++
		}
		if s >= threshold {
			if vandal[i] {
				tp++
			} else {
				fp++
			}
		}
	}
	return ratio(tp, tp+fp), ratio(tp, pos)
}

// PrecisionAtRecall is the best precision of any threshold whose recall
// is at least minRecall (0 when none reaches it).
func PrecisionAtRecall(scores []float64, vandal []bool, minRecall float64) float64 {
	c := PRCurve("", scores, vandal, 0)
	p, ok := c.BestAtRecall(minRecall)
	if !ok {
		return 0
	}
	return p.Precision
}

// withoutNaN leaves out the cases whose score is NaN: they cannot be
// ranked (NaN equals nothing, not even itself, so a group of ties would
// never end). It copies only when there is one.
func withoutNaN(scores []float64, vandal []bool) ([]float64, []bool) {
	i := slices.IndexFunc(scores, math.IsNaN)
	if i < 0 {
		return scores, vandal
	}
	s, v := append([]float64(nil), scores[:i]...), append([]bool(nil), vandal[:i]...)
	for j := i + 1; j < len(scores); j++ {
		if !math.IsNaN(scores[j]) {
			s, v = append(s, scores[j]), append(v, vandal[j])
		}
	}
	return s, v
}

func sortedDesc(scores []float64) []int {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })
	return idx
}

func countLabels(vandal []bool) (pos, neg int) {
	for _, v := range vandal {
		if v {
			pos++
		} else {
			neg++
		}
	}
	return pos, neg
}

// bootstrapConfusions gives, for each column of fired (a rule, or the
// verdict), the 95% bootstrap intervals of precision and recall, resampling
// the labelled cases with replacement (all columns on the same resamples).
func bootstrapConfusions(fired [][]bool, vandal []bool, n int, seed uint64) [][2]*Interval {
	cols := len(fired[0])
	tp, fp, pos := make([]int, cols), make([]int, cols), 0
	for i, row := range fired {
		if vandal[i] {
			pos++
		}
		for c, f := range row {
			if f && vandal[i] {
				tp[c]++
			} else if f {
				fp[c]++
			}
		}
	}
	prec := make([][]float64, cols)
	rec := make([][]float64, cols)
	rng := rand.New(rand.NewPCG(seed, 0x16))
	btp, bfp := make([]int, cols), make([]int, cols)
	for b := 0; b < n; b++ {
		clear(btp)
		clear(bfp)
		bpos := 0
		for k := 0; k < len(vandal); k++ {
			j := rng.IntN(len(vandal))
			if vandal[j] {
				bpos++
			}
			for c, f := range fired[j] {
				if f && vandal[j] {
					btp[c]++
				} else if f {
					bfp[c]++
				}
			}
		}
		for c := 0; c < cols; c++ {
			if btp[c]+bfp[c] > 0 {
				prec[c] = append(prec[c], float64(btp[c])/float64(btp[c]+bfp[c]))
			}
			if bpos > 0 {
				rec[c] = append(rec[c], float64(btp[c])/float64(bpos))
			}
		}
	}
	out := make([][2]*Interval, cols)
	for c := 0; c < cols; c++ {
		out[c][0] = percentiles(ratio(tp[c], tp[c]+fp[c]), prec[c])
		out[c][1] = percentiles(ratio(tp[c], pos), rec[c])
	}
	return out
}

func percentiles(value float64, vals []float64) *Interval {
	iv := &Interval{Value: value, Low: value, High: value}
	if len(vals) == 0 {
		return iv
	}
	sort.Float64s(vals)
	iv.Low = vals[int(0.025*float64(len(vals)-1)+0.5)]
	iv.High = vals[int(0.975*float64(len(vals)-1)+0.5)]
	return iv
}
