(module
  (func (export "compute"){params} (result f64)
    local.get $a
    local.get $b
    local.get $c
    f64.add
    f64.sub))
