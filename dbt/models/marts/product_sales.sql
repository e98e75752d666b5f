with products as (
    select * from {{ ref('stg_retail__products') }}
),

order_items as (
    select * from {{ ref('stg_retail__order_items') }}
),

orders as (
    select * from {{ ref('orders') }}
),

revenue_items as (
    select
        order_items.product_id,
        order_items.order_id,
        order_items.quantity,
        order_items.quantity * order_items.unit_price as line_revenue
    from order_items
    inner join orders on order_items.order_id = orders.order_id
    where orders.is_revenue
),

product_totals as (
    select
        product_id,
        sum(quantity) as units_sold,
        sum(line_revenue) as revenue,
        count(distinct order_id) as order_count
    from revenue_items
    group by product_id
),

joined as (
    select
        products.product_id,
        products.sku,
        products.product_name,
        -- name and SKU: two products may share a name (brand, colour and noun repeat)
        products.product_name || ' (' || products.sku || ')' as product,
        products.category,
        products.list_price,
        coalesce(product_totals.units_sold, 0) as units_sold,
        coalesce(product_totals.revenue, 0) as revenue,
        coalesce(product_totals.order_count, 0) as order_count
    from products
    left join product_totals on products.product_id = product_totals.product_id
),

ranked as (
    select
        *,
        row_number() over (
            order by revenue desc, units_sold desc, product_id
        ) as revenue_rank,
        row_number() over (
            partition by category
            order by revenue desc, units_sold desc, product_id
        ) as category_revenue_rank
    from joined
)

select * from ranked
