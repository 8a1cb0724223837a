package feed

// ClaimKey is the claims bucket's key of the alert at stream sequence seq,
// for tests that read the bucket.
var ClaimKey = claimKey
