package schemas

import "testing"

func TestCodeForStatus_InverseOfStatus(t *testing.T) {
	for _, c := range codes {
		if got := CodeForStatus(c.Status()); got.Status() != c.Status() {
			t.Errorf("CodeForStatus(%d) = %s, whose status is %d", c.Status(), got, got.Status())
		}
	}
	for status, want := range map[int]Code{422: CodeInvalid, 400: CodeBadRequest, 401: CodeUnauthorized, 404: CodeNotFound, 413: CodeTooLarge, 415: CodeUnsupported, 429: CodeRateLimited, 503: CodeUnavailable, 500: CodeInternal, 418: CodeInternal} {
		if got := CodeForStatus(status); got != want {
			t.Errorf("CodeForStatus(%d) = %s, want %s", status, got, want)
		}
	}
}
