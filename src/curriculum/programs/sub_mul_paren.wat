(module
  (func (export "compute"){params} (result f64)
    local.get $a
    local.get $b
    f64.sub
    local.get $c
    f64.mul))
