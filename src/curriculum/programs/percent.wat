(module
  (func (export "compute"){params} (result f64)
    local.get $p
    local.get $x
    f64.mul
    f64.const 100
    f64.div))
