with source as (
    select * from {{ source('retail', 'products') }}
),

renamed as (
    select
        cast(product_id as bigint) as product_id,
        cast(sku as varchar) as sku,
        cast(name as varchar) as product_name,
        cast(category as varchar) as category,
        cast(unit_price as numeric(12, 2)) as list_price,
        cast(created_at as timestamp) as created_at,
        cast(updated_at as timestamp) as updated_at,
        _airbyte_extracted_at as loaded_at
    from source
)

select * from renamed
