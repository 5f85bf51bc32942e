// The display.
