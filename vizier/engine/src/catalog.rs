//! The store's tables as the PxL compiler sees them.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::TableSource;
use pixie_pxl::TableCatalog;
use pixie_store::TableStore;

use crate::table::{ScanStats, StoreTable};

/// One [`StoreTable`] per store table, made once: the store's set of tables is fixed when it is
/// built, and keeping the providers keeps their scan counters.
#[derive(Debug, Clone)]
pub struct StoreCatalog {
    tables: BTreeMap<String, Arc<StoreTable>>,
}

impl StoreCatalog {
    pub fn new(store: &TableStore) -> Self {
        let tables = store
            .table_names()
            .into_iter()
            .filter_map(|name| {
                let table = StoreTable::new(store.clone(), &name)?;
                Some((name, Arc::new(table)))
            })
            .collect();
        StoreCatalog { tables }
    }

    pub fn table(&self, name: &str) -> Option<Arc<StoreTable>> {
        self.tables.get(name).cloned()
    }

    pub fn tables(&self) -> impl Iterator<Item = &Arc<StoreTable>> {
        self.tables.values()
    }

    pub fn scan_stats(&self, name: &str) -> Option<ScanStats> {
        self.tables.get(name).map(|t| t.scan_stats())
    }
}

impl TableCatalog for StoreCatalog {
    fn table_names(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }

    fn table_source(&self, name: &str) -> Option<Arc<dyn TableSource>> {
        let table = self.tables.get(name)?.clone();
        Some(provider_as_source(table))
    }
}
