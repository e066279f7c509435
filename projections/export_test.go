package projections

// CopyAll makes the projector copy rows however few they are, as the
// large batches of a rebuild do, until restore is called.
func CopyAll() (restore func()) {
	old := copyMinRows
	copyMinRows = 1
	return func() { copyMinRows = old }
}
