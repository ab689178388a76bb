package gateway

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"
)

func isUTF8(b []byte) bool      { return utf8.Valid(b) }
func encodeB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
func itoa(i int) string         { return strconv.Itoa(i) }
