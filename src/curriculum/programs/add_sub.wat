(module
  (func (export "compute"){params} (result f64)
    local.get $a
    local.get $b
    f64.add
    local.get $c
    f64.sub))
