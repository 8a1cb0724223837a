package detect

// priorBias is the prior's intercept: about the 9% base rate of vandalism
// among the edits of an anonymous newcomer.
const priorBias = -2.5

// priorWeights are the hand-set weights the training starts from and is
// pulled towards (the mean of its Gaussian prior). They encode what patrollers
// know; an input the training data never varies (num_recent_reversions,
// repeated characters in this data set) keeps its prior.
var priorWeights = [numInputs]float64{
	inAnonymous:        1.0,
	inEditCount:        -0.8,
	inWarns:            0.3,
	inNoSummary:        0.6,
	inRevertSummary:    -1.5,
	inMinor:            -0.5,
	inProfanity:        1.5,
	inProfanityRemoved: -1.0,
	inInformal:         0.6,
	inNonsense:         1.5,
	inShouting:         1.0,
	inRepeated:         0.8,
	inLargeRemoval:     0.5,
	inRefsRemoved:      0.5,
	inMarkupAdded:      -0.3,
	inInsertedWords:    0,
	inRecentReversions: 0.7,
	inLinkSpam:         0.8,
	inSmallFix:         -0.7,
	inTestEdit:         2.0,
	inAutoBlank:        1.5,
	inRemoved:          0.3,
	inSectionSummary:   0.2,
	inProse:            0.4,
	inNewAccount:       0.6,
	inYoungPage:        -0.6,
}
