with orders as (
    select * from {{ ref('stg_retail__orders') }}
),

order_items as (
    select * from {{ ref('stg_retail__order_items') }}
),

customers as (
    select * from {{ ref('stg_retail__customers') }}
),

stores as (
    select * from {{ ref('stg_retail__store_locations') }}
),

order_totals as (
    select
        order_id,
        count(*) as item_count,
        sum(quantity) as units,
        sum(quantity * unit_price) as order_total
    from order_items
    group by order_id
),

joined as (
    select
        orders.order_id,
        orders.customer_id,
        orders.channel,
        orders.store_id,
        stores.store_name,
        stores.city as store_city,
        orders.status,
        {{ is_revenue('orders.status') }} as is_revenue,
        orders.ordered_at,
        cast(date_trunc('month', orders.ordered_at) as date) as order_month,
        -- online sales form a region of their own, placed in the customer's country
        case
            when orders.channel = 'online' then '{{ var("online_region") }}'
            else stores.region
        end as sales_region,
        case
            when orders.channel = 'online' then customers.country
            else stores.country
        end as sales_country,
        customers.country as customer_country,
        coalesce(order_totals.item_count, 0) as item_count,
        coalesce(order_totals.units, 0) as units,
        coalesce(order_totals.order_total, 0) as order_total,
        orders.created_at,
        orders.updated_at
    from orders
    left join customers on orders.customer_id = customers.customer_id
    left join stores on orders.store_id = stores.store_id
    left join order_totals on orders.order_id = order_totals.order_id
),

final as (
    select
        *,
        case when is_revenue then order_total else 0 end as revenue
    from joined
)

select * from final
