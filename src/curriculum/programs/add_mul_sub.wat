(module
  (func (export "compute"){params} (result f64)
    local.get $a
    local.get $b
    local.get $c
    f64.mul
    f64.add
    local.get $d
    f64.sub))
