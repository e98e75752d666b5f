-- Store sales must name their store and online sales must not, or sales_by_region misplaces them.
select
    order_id,
    channel,
    store_id
from {{ ref('stg_retail__orders') }}
where (channel = 'store') != (store_id is not null)
