package web

import "errors"

// ErrBadConfig means Config.validate refused the configuration.
var ErrBadConfig = errors.New("web: bad config")
