package accounting

import (
	"reflect"
	"testing"
	"time"
)

func TestConfig_DefaultsAndValidateChangeNothing(t *testing.T) {
	c := Config{BatchWait: 2 * time.Second}
	before := c
	d := c.withDefaults()
	if err := c.Validate(); err == nil {
		t.Error("no Store: Validate passed")
	}
	if !reflect.DeepEqual(c, before) {
		t.Errorf("withDefaults or Validate changed the config: %+v", c)
	}
	if d.BatchSize != 256 || d.BatchWait != 2*time.Second || d.AckWait != 30*time.Second || d.Logger == nil || d.Registerer == nil {
		t.Errorf("defaults: %+v", d)
	}
	// Validate judges the config as New would use it: a BatchWait too long for the default AckWait.
	if err := (Config{Store: struct{ Store }{}, BatchWait: 10 * time.Second}).Validate(); err == nil {
		t.Error("AckWait 30s with BatchWait 10s passed")
	}
}
