//! `px.quantiles`: one t-digest per group (as Pixie computes it), evaluated to a struct of the
//! quantiles Pixie reports, `{p01, p10, p25, p50, p75, p90, p99}` as float64. `px.pluck_float64(q,
//! 'p99')` reads one field.
//!
//! The digest is DataFusion's own (the one behind `approx_percentile_cont`, at most 100 centroids),
//! so the partial state is small and merges across partitions and agents; a group's seven quantiles
//! come from one digest instead of seven.

use std::sync::{Arc, LazyLock};

use arrow::array::ArrayRef;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{Result, ScalarValue};
use datafusion::functions_aggregate::approx_percentile_cont::{
    ApproxPercentileAccumulator, ApproxPercentileCont,
};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

/// The struct fields `px.quantiles` produces, with the quantile each one holds.
pub const QUANTILES: [(&str, f64); 7] = [
    ("p01", 0.01),
    ("p10", 0.10),
    ("p25", 0.25),
    ("p50", 0.50),
    ("p75", 0.75),
    ("p90", 0.90),
    ("p99", 0.99),
];

pub const UDAF_NAME: &str = "px_quantiles";

/// The return type of `px.quantiles`.
pub fn quantiles_type() -> DataType {
    static FIELDS: LazyLock<Fields> = LazyLock::new(|| {
        QUANTILES
            .iter()
            .map(|(name, _)| Field::new(*name, DataType::Float64, true))
            .collect()
    });
    DataType::Struct(FIELDS.clone())
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Quantiles {
    signature: Signature,
    /// Its state layout is ours: we keep the digest in the same serialized form.
    digest_layout: ApproxPercentileCont,
}

impl Quantiles {
    pub fn new() -> Self {
        Quantiles {
            signature: Signature::numeric(1, Volatility::Immutable),
            digest_layout: ApproxPercentileCont::new(),
        }
    }
}

impl Default for Quantiles {
    fn default() -> Self {
        Quantiles::new()
    }
}

impl AggregateUDFImpl for Quantiles {
    fn name(&self) -> &str {
        UDAF_NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(quantiles_type())
    }

    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(QuantilesAccumulator::default()))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.digest_layout.state_fields(args)
    }
}

#[derive(Debug)]
struct QuantilesAccumulator {
    /// The percentile it is built with is never asked for: we only use its digest.
    digest: ApproxPercentileAccumulator,
}

impl Default for QuantilesAccumulator {
    fn default() -> Self {
        QuantilesAccumulator {
            digest: ApproxPercentileAccumulator::new(0.5, DataType::Float64),
        }
    }
}

impl Accumulator for QuantilesAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        // The digest takes floats only; PxL latencies are int64 nanoseconds.
        let floats = cast(&values[0], &DataType::Float64)?;
        self.digest.update_batch(&[floats])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let DataType::Struct(fields) = quantiles_type() else {
            unreachable!("quantiles_type is a struct")
        };
        let state = self.digest.state()?;
        // State field 2 is the digest's count (see TDigest::to_scalar_state).
        if matches!(state.get(2), Some(ScalarValue::Float64(Some(c))) if *c == 0.0) {
            return Ok(ScalarValue::Struct(Arc::new(
                arrow::array::StructArray::new_null(fields, 1),
            )));
        }
        let state: Vec<ArrayRef> = state.iter().map(|v| v.to_array()).collect::<Result<_>>()?;
        let mut values = Vec::with_capacity(QUANTILES.len());
        for (field, (_, q)) in fields.iter().zip(QUANTILES) {
            // One throwaway accumulator per quantile reads the same digest.
            let mut reader = ApproxPercentileAccumulator::new(q, DataType::Float64);
            reader.merge_batch(&state)?;
            values.push((field.clone(), reader.evaluate()?.to_array()?));
        }
        let array = arrow::array::StructArray::from(values);
        Ok(ScalarValue::Struct(Arc::new(array)))
    }

    fn size(&self) -> usize {
        self.digest.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.digest.state()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.digest.merge_batch(states)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray, Int64Array};

    use super::*;

    fn quantile(value: &ScalarValue, name: &str) -> f64 {
        let ScalarValue::Struct(s) = value else {
            panic!("not a struct: {value:?}")
        };
        s.column_by_name(name)
            .unwrap()
            .as_primitive::<arrow::datatypes::Float64Type>()
            .value(0)
    }

    #[test]
    fn quantiles_of_one_to_a_thousand_are_close_to_exact() {
        let mut acc = QuantilesAccumulator::default();
        let values: ArrayRef = Arc::new(Int64Array::from_iter_values(1..=1000));
        acc.update_batch(&[values]).unwrap();
        let q = acc.evaluate().unwrap();
        for (name, p) in QUANTILES {
            let got = quantile(&q, name);
            let exact = p * 1000.0;
            assert!((got - exact).abs() <= 2.0, "{name}: {got} vs {exact}");
        }
    }

    #[test]
    fn merged_partial_states_give_the_same_median() {
        let mut left = QuantilesAccumulator::default();
        let mut right = QuantilesAccumulator::default();
        left.update_batch(&[Arc::new(Int64Array::from_iter_values(1..=500)) as ArrayRef])
            .unwrap();
        right
            .update_batch(&[Arc::new(Int64Array::from_iter_values(501..=1000)) as ArrayRef])
            .unwrap();
        let states: Vec<ArrayRef> = right
            .state()
            .unwrap()
            .iter()
            .map(|v| v.to_array().unwrap())
            .collect();
        left.merge_batch(&states).unwrap();
        let median = quantile(&left.evaluate().unwrap(), "p50");
        assert!((median - 500.0).abs() <= 2.0, "{median}");
    }

    #[test]
    fn an_empty_group_gives_a_null_struct() {
        let mut acc = QuantilesAccumulator::default();
        let ScalarValue::Struct(s) = acc.evaluate().unwrap() else {
            panic!("not a struct")
        };
        assert!(s.is_null(0));
        assert_eq!(s.data_type(), &quantiles_type());
    }
}
